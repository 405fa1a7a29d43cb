"""The data catalog: the default fields, validation of values, encoding and catalog files."""

from __future__ import annotations

import json
import re
import traceback
from pathlib import Path

import pycountry
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domicile.catalog.catalog import (
    TRANSFORMS,
    Catalog,
    Category,
    FieldSpec,
    JsonValue,
    _canonical_json,
    load_catalog,
    parse_catalog,
)
from domicile.catalog.validators import FIELD_TYPES, MAX_INTEGER
from domicile.errors import CatalogError, InvalidFieldValue, PayloadTooLarge, UnknownField

RESTRICTED = {
    "full_name",
    "email",
    "phone",
    "birth_date",
    "ip_address",
    "precise_location",
    "device_id",
    "advertising_id",
    "iban",
    "private_messages",
}
ALLOWABLE = {
    "display_name",
    "bio",
    "privacy_settings",
    "coarse_location",
    "follower_count",
    "like_count",
}
PUBLIC = {"username", "avatar_url"}


@pytest.fixture(scope="module")
def default() -> Catalog:
    """The built-in catalog."""
    return load_catalog()


# --- the built-in default ---------------------------------------------------------------


def test_default_fields_and_categories(default: Catalog) -> None:
    assert set(default.fields_in(Category.RESTRICTED)) == RESTRICTED
    assert set(default.fields_in(Category.ALLOWABLE)) == ALLOWABLE
    assert set(default.fields_in(Category.PUBLIC)) == PUBLIC
    assert default.fields_in(Category.AGGREGATE) == ()
    assert set(default.fields) == RESTRICTED | ALLOWABLE | PUBLIC


def test_default_specs_are_sound(default: Catalog) -> None:
    for spec in default.fields.values():
        assert spec.type in FIELD_TYPES
        assert spec.transform in TRANSFORMS
        assert spec.description
        assert spec.max_bytes > 0
        if spec.category is Category.RESTRICTED:
            assert spec.transform != "keep"


def test_default_transforms(default: Catalog) -> None:
    assert default.field("birth_date").transform == "generalise:year"
    assert default.field("ip_address").transform == "generalise:prefix"
    assert default.field("precise_location").transform == "generalise:country"
    assert default.field("email").transform == "pseudonymise"
    assert default.field("private_messages").transform == "suppress"
    assert default.field("bio").transform == "keep"


def test_field_lookup(default: Catalog) -> None:
    spec = default.field("email")
    assert spec == FieldSpec(
        "email", Category.RESTRICTED, "email", 256, "pseudonymise", spec.description
    )
    with pytest.raises(UnknownField, match=r"^unknown field `shoe_size`$"):
        default.field("shoe_size")


def test_unknown_field_name_is_clipped_and_quoted(default: Catalog) -> None:
    with pytest.raises(UnknownField) as info:
        default.field("`" + "x" * 500)
    assert len(str(info.value)) < 120
    assert str(info.value).count("`") == 2


def test_digest(default: Catalog) -> None:
    assert re.fullmatch(r"[0-9a-f]{64}", default.digest())
    assert load_catalog().digest() == default.digest()
    assert load_catalog() == default
    changed = parse_catalog(ONE_FIELD.replace("max_bytes = 256", "max_bytes = 255"))
    assert changed.digest() != parse_catalog(ONE_FIELD).digest()
    canonical = json.loads(default.canonical())
    assert canonical["version"] == default.version
    assert set(canonical["fields"]) == set(default.fields)


# --- validating values ------------------------------------------------------------------


def test_validate_normalises_every_value(default: Catalog) -> None:
    values = default.validate(
        {
            "email": " Alice@Example.COM ",
            "phone": "+353 86 123 4567",
            "birth_date": "1990-02-28",
            "ip_address": "2001:DB8::1",
            "precise_location": [53.35, -6.26],
            "coarse_location": "ie",
            "privacy_settings": {"profile_visible": False},
            "follower_count": 12,
            "username": "alice_1",
            "avatar_url": "HTTPS://CDN.Example.com/a.png",
            "iban": "ie29 aibk 9311 5212 3456 78",
        }
    )
    assert values == {
        "email": "Alice@example.com",
        "phone": "+353861234567",
        "birth_date": "1990-02-28",
        "ip_address": "2001:db8::1",
        "precise_location": {"lat": 53.35, "lon": -6.26},
        "coarse_location": "IE",
        "privacy_settings": {"profile_visible": False},
        "follower_count": 12,
        "username": "alice_1",
        "avatar_url": "https://cdn.example.com/a.png",
        "iban": "IE29AIBK93115212345678",
    }


def test_validate_empty(default: Catalog) -> None:
    assert default.validate({}) == {}


def test_unknown_field_is_reported_before_any_value(default: Catalog) -> None:
    with pytest.raises(UnknownField, match=r"^unknown field `shoe_size`$"):
        default.validate({"email": "not an email", "shoe_size": 42})


def test_one_bad_value_refuses_the_whole_mapping(default: Catalog) -> None:
    with pytest.raises(InvalidFieldValue, match=r"^field `phone` is not an E\.164 phone number"):
        default.validate({"email": "a@example.com", "phone": "12"})


def test_non_mapping_is_refused(default: Catalog) -> None:
    with pytest.raises(InvalidFieldValue, match=r"^field values must be an object"):
        default.validate(["email"])  # type: ignore[arg-type]


def test_non_string_field_name(default: Catalog) -> None:
    with pytest.raises(UnknownField, match=r"^unknown field `<int>`$"):
        default.validate({1: "x"})  # type: ignore[dict-item]


def test_size_limit_of_the_field(default: Catalog) -> None:
    limit = default.field("bio").max_bytes
    fits = "x" * (limit - 2)  # the canonical encoding adds two quotes
    assert default.validate({"bio": fits}) == {"bio": fits}
    with pytest.raises(
        PayloadTooLarge, match=rf"^field `bio` is over its size limit of {limit} bytes$"
    ):
        default.validate({"bio": fits + "x"})


def test_size_limit_counts_utf8_bytes_and_escapes(default: Catalog) -> None:
    limit = default.field("bio").max_bytes
    with pytest.raises(PayloadTooLarge):
        default.validate({"bio": "é" * (limit // 2)})
    with pytest.raises(PayloadTooLarge):
        default.validate({"bio": "\n" * (limit // 2)})  # each newline encodes as \n


def test_huge_string_is_refused_before_validation(default: Catalog) -> None:
    with pytest.raises(PayloadTooLarge, match=r"^field `email` is over its size limit"):
        default.validate({"email": "@" * 10_000_000})


def test_max_field_bytes_caps_every_field(default: Catalog) -> None:
    assert default.validate({"bio": "x" * 8}, max_field_bytes=10) == {"bio": "x" * 8}
    with pytest.raises(PayloadTooLarge, match=r"^field `bio` is over its size limit of 9 bytes$"):
        default.validate({"bio": "x" * 8}, max_field_bytes=9)
    with pytest.raises(PayloadTooLarge, match=r"limit of 4096 bytes$"):
        default.validate({"bio": "x" * 5000}, max_field_bytes=1_000_000)


def test_object_size_limit(default: Catalog) -> None:
    big = {f"k{i}": "v" * 100 for i in range(60)}
    with pytest.raises(PayloadTooLarge, match=r"^field `privacy_settings` is over its size"):
        default.validate({"privacy_settings": big})


# --- encoding ---------------------------------------------------------------------------


def test_encode_is_canonical(default: Catalog) -> None:
    value: JsonValue = {"lon": -6.5, "lat": 53.0}
    assert default.encode("precise_location", value) == b'{"lat":53.0,"lon":-6.5}'
    assert default.encode("full_name", "Zoë") == '"Zoë"'.encode()
    assert default.encode("like_count", 3) == b"3"


def test_decode_round_trip(default: Catalog) -> None:
    value = default.validate({"privacy_settings": {"b": True, "a": None, "c": 1.5}})
    data = default.encode("privacy_settings", value["privacy_settings"])
    assert default.decode("privacy_settings", data) == value["privacy_settings"]


@pytest.mark.parametrize(
    "data",
    [b"", b"not json", b'"unterminated', b"\xff\xfe", b'{"a": 1}', b"NaN", b'{"a":1,"a":1}', b" 1"],
)
def test_decode_refuses_what_encode_cannot_have_written(default: Catalog, data: bytes) -> None:
    with pytest.raises(InvalidFieldValue) as info:
        default.decode("privacy_settings", data)
    assert str(info.value) == "stored value of field `privacy_settings` is not canonical JSON"
    assert info.value.__context__ is None


def test_decode_does_not_revalidate(default: Catalog) -> None:
    # Stored under an older, looser catalog: a read must still work.
    assert default.decode("email", b'"legacy address"') == "legacy address"


def test_encode_and_decode_unknown_field(default: Catalog) -> None:
    with pytest.raises(UnknownField):
        default.encode("shoe_size", 42)
    with pytest.raises(UnknownField):
        default.decode("shoe_size", b"42")


@pytest.mark.parametrize("bad", [float("nan"), {1, 2}, b"bytes", "lone\ud800"])
def test_encode_refuses_non_json(default: Catalog, bad: object) -> None:
    with pytest.raises(InvalidFieldValue, match=r"^field `bio` has a value that is not JSON$"):
        default.encode("bio", bad)  # type: ignore[arg-type]


# --- properties -------------------------------------------------------------------------

ALL_TYPES = 'version = "all"\n' + "".join(
    f'[fields.f_{name}]\ncategory = "allowable"\ntype = "{name}"\ntransform = "keep"\n'
    for name in FIELD_TYPES
)
CODES = sorted(str(country.alpha_2) for country in pycountry.countries)


def _pad(values: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Surround with whitespace that normalisation must strip."""
    return st.builds(
        lambda v, a, b: a + v + b, values, st.sampled_from(["", " "]), st.sampled_from(["", "\t"])
    )


def _iban(country: str, bban: str) -> str:
    digits = "".join(str(int(char, 36)) for char in bban + country + "00")
    return f"{country}{98 - int(digits) % 97:02d}{bban}"


def _luhn(body: str) -> str:
    for check in "0123456789":
        digits = [int(c) for c in reversed(body + check)]
        total = sum(
            d if i % 2 == 0 else (d * 2 - 9 if d > 4 else d * 2) for i, d in enumerate(digits)
        )
        if total % 10 == 0:
            return body + check
    raise AssertionError("unreachable")


def _coordinates() -> st.SearchStrategy[object]:
    lat = st.one_of(st.floats(-90, 90), st.integers(-90, 90))
    lon = st.one_of(st.floats(-180, 180), st.integers(-180, 180))
    return st.one_of(
        st.builds(lambda a, b: [a, b], lat, lon),
        st.builds(lambda a, b: {"lat": a, "lon": b}, lat, lon),
    )


LINE_CHARS = st.characters(exclude_categories=("Cs", "Cc", "Zl", "Zp"))
SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(alphabet=LINE_CHARS, max_size=20),
)
VALID: dict[str, st.SearchStrategy[object]] = {
    "email": st.emails(),
    "phone": _pad(st.from_regex(r"\+[1-9][0-9]{6,14}", fullmatch=True)),
    "date": st.one_of(st.dates(), st.dates().map(lambda d: d.isoformat())),
    "ip_address": _pad(st.ip_addresses().map(lambda ip: str(ip).upper())),
    "coordinates": _coordinates(),
    "text": st.text(alphabet=st.one_of(LINE_CHARS, st.sampled_from("\n\t\r")), max_size=200),
    "string": st.text(alphabet=LINE_CHARS, min_size=1, max_size=40).filter(str.strip),
    "identifier": _pad(
        st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1)
    ),
    "country": _pad(st.sampled_from(CODES).flatmap(lambda c: st.sampled_from([c, c.lower()]))),
    "integer": st.integers(0, MAX_INTEGER),
    "boolean": st.booleans(),
    "object": st.dictionaries(
        st.from_regex(r"[A-Za-z0-9_.-]{1,64}", fullmatch=True), SCALAR, max_size=8
    ),
    "iban": st.builds(
        _iban,
        st.from_regex(r"[A-Z]{2}", fullmatch=True),
        st.from_regex(r"[A-Z0-9]{11,30}", fullmatch=True),
    ),
    "payment_card": st.from_regex(r"[0-9]{11,18}", fullmatch=True).map(_luhn),
    "url": st.builds(
        lambda scheme, host, path: f"{scheme}://{host}{path}",
        st.sampled_from(["http", "https", "HTTPS"]),
        st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?(\.[a-zA-Z]{2,6}){1,2}", fullmatch=True),
        st.from_regex(r"(/[A-Za-z0-9._~%-]{0,10}){0,3}(\?[a-z=&]{0,10})?", fullmatch=True),
    ),
}


@pytest.fixture(scope="module")
def all_types() -> Catalog:
    """A catalog with one field of every type, at the type's default size limit."""
    return parse_catalog(ALL_TYPES)


def test_strategies_cover_every_type() -> None:
    assert set(VALID) == set(FIELD_TYPES)


@pytest.mark.parametrize("type_name", sorted(FIELD_TYPES))
@given(data=st.data())
def test_valid_values_are_accepted_idempotently_and_round_trip(
    all_types: Catalog, type_name: str, data: st.DataObject
) -> None:
    name = f"f_{type_name}"
    raw = data.draw(VALID[type_name])
    once = all_types.validate({name: raw})
    assert all_types.validate(once) == once
    encoded = all_types.encode(name, once[name])
    assert len(encoded) <= all_types.field(name).max_bytes
    assert all_types.decode(name, encoded) == once[name]
    assert all_types.encode(name, all_types.decode(name, encoded)) == encoded


MARK = "QZ"


@pytest.mark.parametrize("field_name", sorted(RESTRICTED | ALLOWABLE | PUBLIC))
@given(
    value=st.one_of(
        st.text().map(lambda text: MARK + text + MARK),
        st.lists(st.text().map(lambda text: MARK + text), min_size=1, max_size=3),
        st.dictionaries(st.text(max_size=3), st.text().map(lambda text: MARK + text), min_size=1),
        st.just(MARK * 40_000),
    )
)
def test_errors_never_contain_the_rejected_value(
    default: Catalog, field_name: str, value: object
) -> None:
    error: InvalidFieldValue | PayloadTooLarge | None = None
    try:
        default.validate({field_name: value}, max_field_bytes=50_000)
    except (InvalidFieldValue, PayloadTooLarge) as caught:
        error = caught
    if error is not None:
        text = str(error) + repr(error.args) + "".join(traceback.format_exception(error))
        assert MARK not in text
        assert MARK.lower() not in text
        assert f"`{field_name}`" in str(error)


# --- catalog files ----------------------------------------------------------------------

ONE_FIELD = """
version = "c1"
description = "test"

[fields.email]
category = "restricted"
type = "email"
max_bytes = 256
transform = "pseudonymise"
description = "email address"
"""


def test_one_field_catalog() -> None:
    catalog = parse_catalog(ONE_FIELD)
    assert catalog.version == "c1"
    assert catalog.description == "test"
    assert list(catalog.fields) == ["email"]


def test_defaults_for_optional_keys() -> None:
    text = ONE_FIELD.replace("max_bytes = 256\n", "").replace('description = "email address"\n', "")
    spec = parse_catalog(text).field("email")
    assert spec.max_bytes == FIELD_TYPES["email"].default_max_bytes
    assert spec.description == ""


INVALID = [
    pytest.param("version = ", r"^catalog `c.toml`: not valid TOML: ", id="toml-syntax"),
    pytest.param("owner = 1\n" + ONE_FIELD, r"unknown key `owner` in the top level", id="top-key"),
    pytest.param(
        ONE_FIELD.replace("max_bytes", "max_size"),
        r"unknown key `max_size` in field `email` \(known: category, description, ",
        id="field-key",
    ),
    pytest.param(
        ONE_FIELD.replace('"restricted"', '"secret"'),
        r"field `email` has unknown category `secret` "
        r"\(known: aggregate, allowable, public, restricted\)$",
        id="unknown-category",
    ),
    pytest.param(
        ONE_FIELD.replace('type = "email"', 'type = "emial"'),
        r"field `email` has unknown type `emial` \(known: boolean, ",
        id="unknown-type",
    ),
    pytest.param(
        ONE_FIELD.replace('"pseudonymise"', '"encrypt"'),
        r"field `email` has unknown transform `encrypt` \(known: ",
        id="unknown-transform",
    ),
    pytest.param(
        ONE_FIELD.replace('"pseudonymise"', '"keep"'),
        r"field `email` is restricted but has transform `keep`: "
        r"restricted data never leaves its region unchanged$",
        id="restricted-keep",
    ),
    pytest.param(
        ONE_FIELD.replace('"restricted"', '"aggregate"'),
        r"field `email` has category `aggregate`, which is for derived data, not fields$",
        id="aggregate-field",
    ),
    pytest.param(
        ONE_FIELD.replace('"pseudonymise"', '"generalise:year"'),
        r"field `email` has transform `generalise:year`, which does not fit type `email` "
        r"\(it fits: date\)$",
        id="transform-does-not-fit",
    ),
    pytest.param(
        ONE_FIELD.replace("[fields.email]", '[fields."E-mail"]'),
        r"field name `E-mail` must be a lowercase letter followed by",
        id="bad-field-name",
    ),
    pytest.param(
        ONE_FIELD.replace("[fields.email]", "[fields.1email]"),
        r"field name `1email` must be",
        id="field-name-digit",
    ),
    pytest.param(
        ONE_FIELD.replace("max_bytes = 256", "max_bytes = 0"),
        r"`max_bytes` in field `email` must be between 1 and 16777216$",
        id="max-bytes-zero",
    ),
    pytest.param(
        ONE_FIELD.replace("max_bytes = 256", "max_bytes = 99999999"),
        r"`max_bytes` in field `email` must be between 1 and",
        id="max-bytes-huge",
    ),
    pytest.param(
        ONE_FIELD.replace("max_bytes = 256", 'max_bytes = "256"'),
        r"`max_bytes` in field `email` must be an integer$",
        id="max-bytes-string",
    ),
    pytest.param(
        ONE_FIELD.replace("max_bytes = 256", "max_bytes = true"),
        r"`max_bytes` in field `email` must be an integer$",
        id="max-bytes-bool",
    ),
    pytest.param(
        ONE_FIELD.replace('category = "restricted"\n', ""),
        r"field `email` has no `category`$",
        id="no-category",
    ),
    pytest.param(
        ONE_FIELD.replace('transform = "pseudonymise"\n', ""),
        r"field `email` has no `transform`$",
        id="no-transform",
    ),
    pytest.param(
        ONE_FIELD.replace('type = "email"', "type = 3"),
        r"`type` in field `email` must be a string$",
        id="type-not-string",
    ),
    pytest.param(
        ONE_FIELD.replace('version = "c1"', 'version = ""'),
        r"the top level has no `version` \(it is empty\)$",
        id="empty-version",
    ),
    pytest.param('version = "1"\n', r"has no `\[fields.NAME\]` table$", id="no-fields"),
    pytest.param(
        'version = "1"\nfields = 3\n', r"has no `\[fields.NAME\]` table$", id="fields-not-table"
    ),
    pytest.param(
        'version = "1"\nfields = { email = 3 }\n',
        r"field `email` must be a table$",
        id="field-not-table",
    ),
]


@pytest.mark.parametrize(("text", "pattern"), INVALID)
def test_invalid_catalogs(text: str, pattern: str) -> None:
    with pytest.raises(CatalogError, match=pattern) as info:
        parse_catalog(text, source="c.toml")
    message = str(info.value)
    assert message.startswith("catalog `c.toml`: ")
    assert message == message.rstrip(".")


def test_load_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "catalog.toml"
    path.write_text(ONE_FIELD, encoding="utf-8")
    assert load_catalog(path) == parse_catalog(ONE_FIELD)


def test_load_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(ONE_FIELD.replace('"email"', '"mail"'), encoding="utf-8")
    with pytest.raises(CatalogError, match=rf"^catalog `{re.escape(str(path))}`: .*`mail`"):
        load_catalog(path)


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match=r"^cannot read catalog `.*missing\.toml`: "):
        load_catalog(tmp_path / "missing.toml")


def test_load_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b"version = '\xe9'\n")
    with pytest.raises(CatalogError, match=r"is not UTF-8 text$"):
        load_catalog(path)


def test_default_file_is_a_valid_catalog_file() -> None:
    path = Path(__file__).resolve().parents[3] / "src/domicile/catalog/default_catalog.toml"
    assert load_catalog(path) == load_catalog()


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.characters(codec="utf-8"), max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=12,
)


DEFAULT = load_catalog()


@settings(max_examples=300)
@given(json_values)
def test_decode_takes_back_exactly_what_encode_wrote(value: JsonValue) -> None:
    data = _canonical_json(value)
    assert data is not None
    assert _canonical_json(DEFAULT.decode("privacy_settings", data)) == data


@pytest.mark.parametrize(
    "data",
    [b'"\\u0041"', b'"a\\/b"', b"1E2", b"1e16", b"[1.0e1]", b'"\\u00e9"', b"-0", b"01"],
)
def test_decode_refuses_other_spellings_of_a_value(default: Catalog, data: bytes) -> None:
    with pytest.raises(InvalidFieldValue):
        default.decode("privacy_settings", data)
