"""The migration's field checks give exactly the catalog's answers: value, bytes or error."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domicile.catalog.catalog import Catalog, load_catalog
from domicile.errors import InvalidInput
from domicile.migrate.fieldcheck import encode_value, field_check

CATALOG = load_catalog()
LIMIT = 65_536


def _catalog_answer(catalog: Catalog, name: str, raw: object, limit: int | None) -> object:
    try:
        value = catalog.validate({name: raw}, max_field_bytes=limit)[name]
    except InvalidInput as exc:
        return type(exc)
    return value, catalog.encode(name, value)


def _check_answer(catalog: Catalog, name: str, raw: object, limit: int | None) -> object:
    try:
        return field_check(catalog.field(name), limit)(raw)
    except InvalidInput as exc:
        return type(exc)


def _same(name: str, raw: object, limit: int | None = LIMIT) -> None:
    expected = _catalog_answer(CATALOG, name, raw, limit)
    got = _check_answer(CATALOG, name, raw, limit)
    assert got == expected, (name, raw)
    if isinstance(got, tuple):
        assert type(got[0]) is type(expected[0])  # type: ignore[index]


EDGES: list[object] = [
    "", " ", "  Lena Vogel ", "Lena\tVogel", "Lena\nVogel", 'Lena "LV" Vogel', "back\\slash",
    "Zoë", "e\u0301", "\u2028", "\x7f", "x" * 300, " " + "x" * 255, "x" * 254, "x" * 255,
    "1.2.3.4", "01.2.3.4", "256.1.1.1", " 1.2.3.4", "1.2.3.4 ", "1.2.3", "::1", "fe80::1%eth0",
    "192.0.2.138", "0.0.0.0", "255.255.255.255", "1.2.3.4\n",
    "lena@example.org", " Lena@Example.ORG ", "lena@ex_ample.org", "not-an-email",
    "a@b", "ünï@example.org", "lena@bücher.example", '"q"@example.org',
    "+353 86 123 4567", "(01) 234", "+1", "1990-02-28", "31/02/1990", "1990-02-30",
    "a@b.c", "a@b.1", "a@1.2.3.4", "a" * 64 + "@x.org", "a" * 65 + "@x.org", "a@B.com",
    "a..b@x.com", ".a@x.com", "a.@x.com", "a@-x.com", "a@x-.com", "a@x.com.", "a@x",
    "a@" + "b" * 63 + ".org", "a@" + "b" * 64 + ".org", "a@" + ".".join(["b" * 60] * 5),
    "x" * 60 + "@" + ".".join(["b" * 60] * 4), "a b@x.org", "a@b@x.org",
    "2024-02-29", "2023-02-29", "0000-01-01", "9999-12-31", "2024-13-01", "２０２４-01-01",
    " 2024-01-01", "2024-1-01",
    "+10981836553", "+0123456789", "+123456", "+1234567", "+123456789012345",
    "+1234567890123456", " +12345678", "+12345678 ", "+1234567８", "+1-234-567-890",
    0, 1, -1, 2**63 - 1, 2**63, True, False, 1.5, float("nan"), None,
    ["x"], {"lat": 1, "lon": 2}, b"bytes", datetime.date(1990, 1, 2),
]  # fmt: skip


@pytest.mark.parametrize("name", sorted(CATALOG.fields))
def test_every_field_agrees_with_the_catalog_on_edge_values(name: str) -> None:
    for raw in EDGES:
        _same(name, raw)
        _same(name, raw, None)
        _same(name, raw, 6)


@settings(max_examples=600, deadline=None)
@given(
    name=st.sampled_from(
        [
            "full_name",
            "display_name",
            "email",
            "ip_address",
            "follower_count",
            "birth_date",
            "phone",
        ]
    ),
    raw=st.one_of(
        st.text(),
        st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=127)),
        st.from_regex(r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}", fullmatch=True),
        st.from_regex(r"[A-Za-z0-9.+_-]{1,70}@[A-Za-z0-9.-]{1,80}", fullmatch=True),
        st.from_regex(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", fullmatch=True),
        st.from_regex(r"\+[0-9]{5,17}", fullmatch=True),
        st.integers(),
        st.booleans(),
    ),
    limit=st.sampled_from([None, 4, 12, LIMIT]),
)
def test_random_values_agree_with_the_catalog(name: str, raw: object, limit: int | None) -> None:
    _same(name, raw, limit)


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
        max_leaves=6,
    )
)
def test_encoding_is_the_catalogs_canonical_json(value: object) -> None:
    try:
        expected: bytes | None = CATALOG.encode("display_name", value)  # type: ignore[arg-type]
    except InvalidInput:
        expected = None  # not JSON (an infinity)
    assert encode_value(value) == expected  # type: ignore[arg-type]


def test_values_that_are_not_json_encode_to_none() -> None:
    assert encode_value(float("inf")) is None
    assert encode_value({"a": float("nan")}) is None
