"""Property tests of the privacy-enhancing transforms (pure: no storage, no clock)."""

from __future__ import annotations

import datetime
import ipaddress
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from domicile.catalog.catalog import JsonValue
from domicile.catalog.validators import FIELD_TYPES
from domicile.errors import ConfigError, IntegrityError, InvalidFieldValue, InvalidInput
from domicile.pets import (
    FITS,
    FieldPlan,
    LocalPetKeys,
    TransformOptions,
    apply_transform,
    calling_code,
    check_k_anonymity,
    create_secret_file,
    generalise_ip,
    grid_cell,
    is_pseudonym,
    k_anonymous_counts,
    pseudonymise,
    resolve_token,
    tokenise,
    transform_values,
    verify_k_anonymous,
)
from domicile.pets.kanon import freeze

EU = LocalPetKeys("eu-ie", b"\x01" * 32)
EU_OTHER_SECRET = LocalPetKeys("eu-ie", b"\x02" * 32)
US_SAME_SECRET = LocalPetKeys("us", b"\x01" * 32)

domains = st.from_regex(r"[a-z0-9][a-z0-9._:-]{0,20}", fullmatch=True)
texts = st.text(alphabet=st.characters(categories=("L", "N", "P", "S")), min_size=6, max_size=40)
VALUES: dict[str, st.SearchStrategy[str] | st.SearchStrategy[dict[str, float]]] = {
    "email": st.from_regex(r"[a-z0-9._]{6,20}@[a-z]{2,10}\.(com|org|ie)", fullmatch=True),
    "phone": st.from_regex(r"\+[1-9][0-9]{6,14}", fullmatch=True),
    "date": st.dates().map(datetime.date.isoformat),
    "ip_address": st.ip_addresses().map(str),
    "coordinates": st.fixed_dictionaries(
        {
            "lat": st.floats(-90, 90, allow_nan=False),
            "lon": st.floats(-180, 180, allow_nan=False),
        }
    ),
    "identifier": st.from_regex(r"[!-~]{6,40}", fullmatch=True),
    "string": texts,
    "text": texts,
}


def normalised(field_type: str, raw: object) -> JsonValue:
    """The value as the catalog stores it; generated inputs it refuses are skipped."""
    try:
        return FIELD_TYPES[field_type].validate("f", raw)
    except InvalidFieldValue:
        assume(False)
        raise


@given(domain=domains, value=texts)
def test_pseudonyms_are_deterministic_within_a_domain(domain: str, value: str) -> None:
    key = EU.pseudonym_key(domain)
    first = pseudonymise("email", value, key)
    assert first == pseudonymise("email", value, EU.pseudonym_key(domain))
    assert is_pseudonym(first)


@given(a=domains, b=domains, value=texts)
def test_pseudonyms_differ_across_domains_fields_and_regions(a: str, b: str, value: str) -> None:
    assume(a != b)
    here = pseudonymise("email", value, EU.pseudonym_key(a))
    assert here != pseudonymise("email", value, EU.pseudonym_key(b))
    assert here != pseudonymise("phone", value, EU.pseudonym_key(a))
    assert here != pseudonymise("email", value, US_SAME_SECRET.pseudonym_key(a))


@given(value=texts, other=texts)
def test_distinct_values_get_distinct_pseudonyms(value: str, other: str) -> None:
    assume(value != other)
    key = EU.pseudonym_key("d")
    assert pseudonymise("email", value, key) != pseudonymise("email", other, key)


@given(field_type=st.sampled_from(sorted(VALUES)), data=st.data(), domain=domains)
def test_tokens_resolve_only_with_the_home_regions_key(
    field_type: str, data: st.DataObject, domain: str
) -> None:
    value = normalised(field_type, data.draw(VALUES[field_type]))
    token = tokenise("f", value, EU, domain)
    assert token == tokenise("f", value, EU, domain)  # deterministic: joins work
    assert resolve_token("f", token, EU, domain) == value
    for wrong in (EU_OTHER_SECRET, US_SAME_SECRET):
        with pytest.raises(IntegrityError):
            resolve_token("f", token, wrong, domain)
    with pytest.raises(IntegrityError):
        resolve_token("g", token, EU, domain)  # bound to the field
    with pytest.raises(IntegrityError):
        resolve_token("f", token, EU, domain + "x")  # and to the domain


@pytest.mark.parametrize("token", ["", "ps_abc", "tk_!!!", "tk_" + "A" * 10])
def test_malformed_tokens_are_refused(token: str) -> None:
    with pytest.raises((InvalidInput, IntegrityError)):
        resolve_token("f", token, EU, "d")


def _contains(output: JsonValue, raw: JsonValue) -> bool:
    text = json.dumps(output, sort_keys=True, separators=(",", ":"))
    needle = raw if isinstance(raw, str) else json.dumps(raw, sort_keys=True, separators=(",", ":"))
    return needle in text or (isinstance(output, str) and needle in output)


@settings(max_examples=300)
@given(field_type=st.sampled_from(sorted(VALUES)), data=st.data(), domain=domains)
def test_no_transform_output_contains_the_input_value(
    field_type: str, data: st.DataObject, domain: str
) -> None:
    value = normalised(field_type, data.draw(VALUES[field_type]))
    if field_type == "ip_address":
        # A /24 or /48 is named by its first address; that address is no host's.
        assume(value != str(ipaddress.ip_network(generalise_ip("f", value)).network_address))
    for transform, fits in FITS.items():
        if transform == "keep" or (fits is not None and field_type not in fits):
            continue
        out = apply_transform(transform, field_type, value, EU, field="f", domain=domain)
        assert out != value, transform
        assert not _contains(out, value), transform


@given(year=st.integers(1, 9999), a=st.integers(1, 365), b=st.integers(1, 365))
def test_every_date_of_a_year_maps_to_the_year(year: int, a: int, b: int) -> None:
    start = datetime.date(year, 1, 1)
    days = [start + datetime.timedelta(days=n - 1) for n in (a, b)]
    assume(all(d.year == year for d in days))
    outs = {
        apply_transform("generalise:year", "date", d.isoformat(), EU, field="f", domain="d")
        for d in days
    }
    assert outs == {year}


@given(net=st.integers(0, 2**24 - 1), a=st.integers(0, 255), b=st.integers(0, 255))
def test_addresses_of_a_slash_24_share_the_prefix(net: int, a: int, b: int) -> None:
    first, second = (str(ipaddress.IPv4Address((net << 8) | host)) for host in (a, b))
    assert generalise_ip("f", first) == generalise_ip("f", second)
    assert generalise_ip("f", first).endswith("/24")


@given(net=st.integers(0, 2**48 - 1), a=st.integers(0, 2**80 - 1), b=st.integers(0, 2**80 - 1))
def test_addresses_of_a_slash_48_share_the_prefix(net: int, a: int, b: int) -> None:
    addresses = [ipaddress.IPv6Address((net << 80) | host) for host in (a, b)]
    assume(all(address.ipv4_mapped is None for address in addresses))  # IPv4 hosts: below
    first, second = map(str, addresses)
    assert generalise_ip("f", first) == generalise_ip("f", second)
    assert generalise_ip("f", first).endswith("/48")


@given(host=st.integers(0, 2**32 - 1))
def test_an_ipv4_mapped_address_is_cut_as_the_ipv4_host_it_is(host: int) -> None:
    """`::ffff:a.b.c.d` is an IPv4 host: it gets the /24 that a.b.c.d gets (cut as an
    IPv6 address it would be `::/48`, the same for every IPv4 host)."""
    ipv4 = ipaddress.IPv4Address(host)
    mapped = str(ipaddress.IPv6Address((0xFFFF << 32) | host))
    assert generalise_ip("f", mapped) == generalise_ip("f", str(ipv4))
    assert generalise_ip("f", mapped).endswith("/24")


@given(
    row=st.integers(0, 179), column=st.integers(0, 359),
    a=st.tuples(st.floats(0, 0.999), st.floats(0, 0.999)),
    b=st.tuples(st.floats(0, 0.999), st.floats(0, 0.999)),
)  # fmt: skip
def test_points_of_a_grid_cell_share_the_cell(
    row: int, column: int, a: tuple[float, float], b: tuple[float, float]
) -> None:
    cells = [grid_cell("f", {"lat": row - 90 + dy, "lon": column - 180 + dx}) for dy, dx in (a, b)]
    assert cells[0] == cells[1] == {"grid_deg": 1.0, "lat": row - 90.0, "lon": column - 180.0}


def test_grid_edges_and_sizes() -> None:
    assert grid_cell("f", {"lat": 90.0, "lon": 180.0}) == {
        "grid_deg": 1.0,
        "lat": 89.0,
        "lon": -180.0,
    }
    assert grid_cell("f", {"lat": 53.35, "lon": -6.26}, 5.0) == {
        "grid_deg": 5.0,
        "lat": 50.0,
        "lon": -10.0,
    }
    for bad in (0.1, 0.7, 100.0):
        with pytest.raises(ConfigError):
            TransformOptions(grid_degrees=bad)


@given(
    code=st.sampled_from(["1", "7", "44", "49", "353", "880", "971"]),
    rest=st.from_regex(r"[0-9]{7,10}", fullmatch=True),
)
def test_numbers_of_a_calling_code_share_it(code: str, rest: str) -> None:
    number = f"+{code}{rest}"[:16]
    assert calling_code("f", number) == f"+{code}"


class Locator:
    """A stand-in geo database."""

    def country_at(self, lat: float, lon: float) -> str | None:
        return "IE" if lat > 51 else None


def test_country_comes_from_a_locator_when_there_is_one() -> None:
    options = TransformOptions(locator=Locator())
    point: JsonValue = {"lat": 53.35, "lon": -6.26}
    assert (
        apply_transform(
            "generalise:country", "coordinates", point, EU, field="f", domain="d", options=options
        )
        == "IE"
    )
    sea: JsonValue = {"lat": 40.0, "lon": -30.0}
    assert apply_transform(
        "generalise:country", "coordinates", sea, EU, field="f", domain="d", options=options
    ) == {"grid_deg": 1.0, "lat": 40.0, "lon": -30.0}
    assert (
        apply_transform("generalise:country", "ip_address", "192.0.2.7", EU, field="f", domain="d")
        == "192.0.0.0/16"
    )


def test_dispatcher_refuses_unknown_and_unfitting_transforms() -> None:
    with pytest.raises(ConfigError, match="unknown transform"):
        apply_transform("ff3", "string", "x", EU, field="f", domain="d")
    with pytest.raises(ConfigError, match="does not fit"):
        apply_transform("generalise:year", "email", "a@b.ie", EU, field="email", domain="d")
    assert apply_transform("suppress", "text", "secret", EU, field="f", domain="d") is None


def test_transform_values_drops_suppressed_and_unplanned_fields() -> None:
    plan = {
        "email": FieldPlan("email", "email", "pseudonymise"),
        "iban": FieldPlan("iban", "iban", "suppress"),
        "birth_date": FieldPlan("birth_date", "date", "generalise:year"),
    }
    values: dict[str, JsonValue] = {
        "email": "a@b.ie",
        "iban": "IE29AIBK93115212345678",
        "birth_date": "1990-05-17",
        "bio": "x",
    }
    out = transform_values(plan, values, EU, domain="analytics")
    assert set(out) == {"email", "birth_date"}
    assert out["birth_date"] == 1990


def test_messages_never_quote_the_value() -> None:
    calls: list[Callable[[], object]] = [
        lambda: apply_transform(
            "generalise:year", "date", "secret-date", EU, field="f", domain="d"
        ),
        lambda: generalise_ip("f", "10.0.0.300-secret"),
        lambda: calling_code("f", "secret-phone"),
    ]
    for call in calls:
        with pytest.raises(InvalidFieldValue) as info:
            call()
        assert "secret" not in str(info.value)
        assert info.value.__context__ is None or "secret" not in str(info.value.__context__)


@settings(max_examples=200)
@given(
    rows=st.lists(st.tuples(st.integers(0, 3), st.sampled_from(["a", "b"])), max_size=60),
    k=st.integers(2, 6),
)
def test_k_anonymity_checker_matches_brute_force(rows: list[tuple[int, str]], k: int) -> None:
    report = check_k_anonymity(rows, k)
    sizes = {row: sum(1 for other in rows if other == row) for row in rows}
    small = {row: n for row, n in sizes.items() if n < k}
    assert report.rows == len(rows)
    assert report.classes == len(sizes)
    assert report.smallest_class == min(sizes.values(), default=0)
    assert report.offending_classes == len(small)
    assert report.offending_rows == sum(small.values())
    assert dict(report.offending) == {freeze(row): n for row, n in small.items()}
    assert report.is_k_anonymous == (not small)


@given(cells=st.lists(st.tuples(st.integers(0, 4)), max_size=80), k=st.integers(2, 6))
def test_k_anonymous_counts_suppress_small_cells(cells: list[tuple[int]], k: int) -> None:
    result = k_anonymous_counts(cells, k)
    truth = Counter(cells)
    assert dict(result.counts) == {freeze(c): n for c, n in truth.items() if n >= k}
    assert result.suppressed_cells == sum(1 for n in truth.values() if n < k)


def test_verify_k_anonymous_reports_counts_only() -> None:
    report = check_k_anonymity([("1990", "IE"), ("1990", "IE"), ("1931", "NO")], 2)
    with pytest.raises(Exception, match="1 classes holding 1 rows") as info:
        verify_k_anonymous(report)
    assert "1931" not in str(info.value)
    with pytest.raises(InvalidInput):
        check_k_anonymity([], 1)
    verify_k_anonymous(check_k_anonymity([], 2))


def test_keys_come_from_a_secret_file(tmp_path: Path) -> None:
    path = tmp_path / "region" / "pets.key"
    create_secret_file(path)
    assert path.stat().st_mode & 0o777 == 0o600
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        create_secret_file(path)
    keys = LocalPetKeys.from_file("eu-ie", path)
    again = LocalPetKeys.from_file("eu-ie", path)
    assert keys.pseudonym_key("d") == again.pseudonym_key("d") != keys.pseudonym_key("e")
    assert len(keys.token_key()) == 64
    with pytest.raises(ConfigError):
        LocalPetKeys("eu-ie", b"short")
    with pytest.raises(ConfigError):
        LocalPetKeys.from_file("eu-ie", tmp_path / "missing.key")
    with pytest.raises(InvalidInput):
        keys.pseudonym_key("bad domain with spaces")
