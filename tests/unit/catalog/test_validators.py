"""Field types: what each accepts, how it normalises, what it refuses and how it says so."""

from __future__ import annotations

import datetime
import traceback
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domicile.catalog.validators import FIELD_TYPES, MAX_INTEGER
from domicile.errors import InvalidFieldValue

ACCEPT: list[tuple[str, Any, Any]] = [
    # email
    ("email", "alice@example.com", "alice@example.com"),
    ("email", " Alice.Smith+tag@Example.COM ", "Alice.Smith+tag@example.com"),
    ("email", "o'brien@mail.example.ie", "o'brien@mail.example.ie"),
    ("email", "user@bücher.de", "user@xn--bcher-kva.de"),
    # phone
    ("phone", "+353861234567", "+353861234567"),
    ("phone", " +353 86 123 4567 ", "+353861234567"),
    ("phone", "+1 (555) 010-0000", "+15550100000"),
    ("phone", "+47.22.12.34.56", "+4722123456"),
    # date
    ("date", "2024-02-29", "2024-02-29"),
    ("date", " 1990-01-01 ", "1990-01-01"),
    ("date", datetime.date(2000, 1, 2), "2000-01-02"),
    ("date", "0001-01-01", "0001-01-01"),
    # ip_address
    ("ip_address", "192.0.2.1", "192.0.2.1"),
    ("ip_address", " 2001:DB8:0:0:0:0:0:1 ", "2001:db8::1"),
    ("ip_address", "::ffff:192.0.2.1", "::ffff:c000:201"),
    # coordinates
    ("coordinates", {"lat": 53.35, "lon": -6.26}, {"lat": 53.35, "lon": -6.26}),
    ("coordinates", [53, -6], {"lat": 53.0, "lon": -6.0}),
    ("coordinates", (90, 180), {"lat": 90.0, "lon": 180.0}),
    ("coordinates", {"lon": -180, "lat": -90.0}, {"lat": -90.0, "lon": -180.0}),
    # text
    ("text", "hello\nworld\ttab\r\n", "hello\nworld\ttab\r\n"),
    ("text", "", ""),
    ("text", "  kept as written  ", "  kept as written  "),
    # string
    ("string", "  Alice Ní Bhriain  ", "Alice Ní Bhriain"),
    ("string", "e\u0301", "\u00e9"),
    ("string", "Zoë 🙂", "Zoë 🙂"),
    # identifier
    ("identifier", "38400000-8cf0-11bd-b23e-10b96e40000d", "38400000-8cf0-11bd-b23e-10b96e40000d"),
    ("identifier", " AEBE52E7-03EE-455A ", "AEBE52E7-03EE-455A"),
    # country
    ("country", "ie", "IE"),
    ("country", " Gb ", "GB"),
    # integer
    ("integer", 0, 0),
    ("integer", 42, 42),
    ("integer", MAX_INTEGER, MAX_INTEGER),
    # boolean
    ("boolean", True, True),
    ("boolean", False, False),
    # object
    (
        "object",
        {"profile_visible": True, "max_age": 3, "theme": "dark", "x.y-z": None, "r": 0.5},
        {"profile_visible": True, "max_age": 3, "theme": "dark", "x.y-z": None, "r": 0.5},
    ),
    ("object", {}, {}),
    # iban
    ("iban", "IE29 AIBK 9311 5212 3456 78", "IE29AIBK93115212345678"),
    ("iban", "gb82west12345698765432", "GB82WEST12345698765432"),
    ("iban", "NO9386011117947", "NO9386011117947"),
    # payment_card
    ("payment_card", "4111 1111 1111 1111", "4111111111111111"),
    ("payment_card", "5555-5555-5555-4444", "5555555555554444"),
    # url
    (
        "url",
        "HTTPS://Example.COM/a/B.png?x=1#f",
        "https://example.com/a/B.png?x=1#f",
    ),
    ("url", "http://[2001:DB8::1]:8080/x", "http://[2001:db8::1]:8080/x"),
    ("url", "https://cdn.example.com", "https://cdn.example.com"),
]

REJECT: list[tuple[str, Any, str]] = [
    # email
    ("email", "", "is not a valid email address"),
    ("email", "alice", "is not a valid email address"),
    ("email", "alice@", "is not a valid email address"),
    ("email", "@example.com", "is not a valid email address"),
    ("email", "a@localhost", "is not a valid email address"),
    ("email", "a@@example.com", "is not a valid email address"),
    ("email", "a b@example.com", "is not a valid email address"),
    ("email", "a..b@example.com", "is not a valid email address"),
    ("email", ".a@example.com", "is not a valid email address"),
    ("email", "a@-example.com", "is not a valid email address"),
    ("email", "a@example.123", "is not a valid email address"),
    ("email", "a@exa_mple.com", "is not a valid email address"),
    ("email", "a@example..com", "is not a valid email address"),
    ("email", "a@exa\nmple.com", "is not a valid email address"),
    ("email", "x" * 65 + "@example.com", "is not a valid email address"),
    ("email", "a@" + ("x" * 60 + ".") * 5 + "com", "is not a valid email address"),
    ("email", "x" * 64 + "@" + ("x" * 60 + ".") * 4 + "com", "(over 254 characters)"),
    ("email", 5, "must be a string"),
    ("email", None, "must be a string"),
    ("email", "a\ud800@example.com", "is not valid Unicode text"),
    # phone
    ("phone", "353861234567", "is not an E.164 phone number"),
    ("phone", "+0353861234567", "is not an E.164 phone number"),
    ("phone", "+123456", "is not an E.164 phone number"),
    ("phone", "+1234567890123456", "is not an E.164 phone number"),
    ("phone", "+35386123456a", "is not an E.164 phone number"),
    ("phone", "++353861234567", "is not an E.164 phone number"),
    ("phone", "+３５３861234567", "is not an E.164 phone number"),
    ("phone", 353861234567, "must be a string"),
    # date
    ("date", "2023-02-29", "is not a valid date (YYYY-MM-DD)"),
    ("date", "2024-13-01", "is not a valid date"),
    ("date", "20240101", "is not a valid date"),
    ("date", "2024-W01-1", "is not a valid date"),
    ("date", "2024-1-1", "is not a valid date"),
    ("date", "1990-01-01T00:00:00", "is not a valid date"),
    ("date", "１９９０-01-01", "is not a valid date"),
    ("date", datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC), "must be a string"),
    ("date", 19900101, "must be a string"),
    # ip_address
    ("ip_address", "256.1.1.1", "is not a valid IPv4 or IPv6 address"),
    ("ip_address", "192.168.01.1", "is not a valid IPv4 or IPv6 address"),
    ("ip_address", "fe80::1%eth0", "is not a valid IPv4 or IPv6 address"),
    ("ip_address", "example.com", "is not a valid IPv4 or IPv6 address"),
    ("ip_address", "1.2.3", "is not a valid IPv4 or IPv6 address"),
    ("ip_address", "", "is not a valid IPv4 or IPv6 address"),
    ("ip_address", 3232235777, "must be a string"),
    # coordinates
    ("coordinates", {"lat": 91, "lon": 0}, "has a latitude outside -90..90"),
    ("coordinates", [0, 181], "has a longitude outside -180..180"),
    ("coordinates", [0, -180.5], "has a longitude outside -180..180"),
    ("coordinates", [0], "must be {"),
    ("coordinates", [0, 0, 0], "must be {"),
    ("coordinates", {"lat": 0}, "must be {"),
    ("coordinates", {"lat": 0, "lon": 0, "alt": 1}, "must be {"),
    ("coordinates", {"lat": 0, "lng": 0}, "must be {"),
    ("coordinates", ["53", "-6"], "has a latitude that is not a number"),
    ("coordinates", [True, 0], "has a latitude that is not a number"),
    ("coordinates", [float("nan"), 0], "has a latitude that is not a finite number"),
    ("coordinates", [0, float("inf")], "has a longitude that is not a finite number"),
    ("coordinates", [10**400, 0], "has a latitude outside -90..90"),
    ("coordinates", "53.3,-6.2", "must be {"),
    # text
    ("text", "nul\x00byte", "contains control characters"),
    ("text", "\x1b[31mred", "contains control characters"),
    ("text", "c1\x85", "contains control characters"),
    ("text", "lone\ud800", "is not valid Unicode text"),
    ("text", 5, "must be a string"),
    # string
    ("string", "", "must not be empty"),
    ("string", "   ", "must not be empty"),
    ("string", "two\nlines", "must be a single line without control characters"),
    ("string", "a\u2028b", "must be a single line"),
    ("string", "a\x00b", "must be a single line"),
    ("string", ["Alice"], "must be a string"),
    # identifier
    ("identifier", "a b", "must be printable ASCII without whitespace"),
    ("identifier", "", "must be printable ASCII without whitespace"),
    ("identifier", "gerät", "must be printable ASCII without whitespace"),
    ("identifier", "a\tb", "must be printable ASCII without whitespace"),
    ("identifier", 1234, "must be a string"),
    # country
    ("country", "XX", "is not an ISO 3166-1 alpha-2 country code"),
    ("country", "IRL", "is not an ISO 3166-1 alpha-2 country code"),
    ("country", "uk", "is not an ISO 3166-1 alpha-2 country code"),
    ("country", "ß", "is not an ISO 3166-1 alpha-2 country code"),
    ("country", "", "is not an ISO 3166-1 alpha-2 country code"),
    ("country", 1, "must be a string"),
    # integer
    ("integer", -1, f"must be between 0 and {MAX_INTEGER}"),
    ("integer", MAX_INTEGER + 1, "must be between 0 and"),
    ("integer", True, "must be an integer"),
    ("integer", 1.0, "must be an integer"),
    ("integer", "1", "must be an integer"),
    # boolean
    ("boolean", 1, "must be true or false"),
    ("boolean", "true", "must be true or false"),
    ("boolean", None, "must be true or false"),
    # object
    ("object", [], "must be a JSON object"),
    ("object", "x", "must be a JSON object"),
    ("object", {1: True}, "has a key that is not 1–64 letters"),
    ("object", {"": 1}, "has a key that is not"),
    ("object", {"a b": 1}, "has a key that is not"),
    ("object", {"k" * 65: 1}, "has a key that is not"),
    ("object", {"a": [1]}, "has a value that is not a string, number, boolean or null"),
    ("object", {"a": {"b": 1}}, "has a value that is not a string"),
    ("object", {"a": float("nan")}, "has a number that is not finite"),
    ("object", {"a": 2**64}, "has an integer outside the signed 64-bit range"),
    ("object", {"a": "x" * 1025}, "has a string over 1024 characters"),
    ("object", {"a": "bell\x07"}, "or with control characters"),
    ("object", {f"k{i}": i for i in range(65)}, "has more than 64 entries"),
    # iban
    ("iban", "IE29AIBK93115212345679", "is not a valid IBAN"),
    ("iban", "IE29", "is not a valid IBAN"),
    ("iban", "1E29AIBK93115212345678", "is not a valid IBAN"),
    ("iban", "IЕ29AIBK93115212345678", "is not a valid IBAN"),  # Cyrillic Е
    ("iban", "IE29AIBK9311521234567!", "is not a valid IBAN"),
    ("iban", 12345, "must be a string"),
    # payment_card
    ("payment_card", "4111111111111112", "is not a valid payment card number"),
    ("payment_card", "4111", "is not a valid payment card number"),
    ("payment_card", "4111-1111-1111-111x", "is not a valid payment card number"),
    ("payment_card", 4111111111111111, "must be a string"),
    # url
    ("url", "ftp://example.com/a", "is not an absolute http or https URL without credentials"),
    ("url", "javascript:alert(1)", "is not an absolute http or https URL"),
    ("url", "https://user:pw@example.com/", "is not an absolute http or https URL"),
    ("url", "https://user@example.com/", "is not an absolute http or https URL"),
    ("url", "https:///path", "is not an absolute http or https URL"),
    ("url", "https://exa mple.com", "is not an absolute http or https URL"),
    ("url", "https://example.com:99999/", "is not an absolute http or https URL"),
    ("url", "/relative/path", "is not an absolute http or https URL"),
    ("url", "https://bücher.de", "is not an absolute http or https URL"),
    ("url", "https://[zz::1]/", "is not an absolute http or https URL"),
    ("url", "https://exa_mple.com/", "is not an absolute http or https URL"),
    ("url", "https://-example.com/", "is not an absolute http or https URL"),
    ("url", 7, "must be a string"),
]


@pytest.mark.parametrize(("type_name", "raw", "normalised"), ACCEPT)
def test_accepts_and_normalises(type_name: str, raw: Any, normalised: Any) -> None:
    validate = FIELD_TYPES[type_name].validate
    result = validate("f", raw)
    assert result == normalised
    assert type(result) is type(normalised)
    assert validate("f", result) == result


@pytest.mark.parametrize(("type_name", "raw", "rule"), REJECT)
def test_rejects_with_a_message_naming_the_rule(type_name: str, raw: Any, rule: str) -> None:
    with pytest.raises(InvalidFieldValue) as info:
        FIELD_TYPES[type_name].validate("my_field", raw)
    message = str(info.value)
    assert message.startswith("field `my_field` ")
    assert rule in message
    assert message == message.rstrip(".")


def test_every_type_is_covered_by_the_tables() -> None:
    assert {row[0] for row in ACCEPT} == set(FIELD_TYPES)
    assert {row[0] for row in REJECT} == set(FIELD_TYPES)


def test_default_limits_are_positive() -> None:
    for field_type in FIELD_TYPES.values():
        assert field_type.default_max_bytes > 0
        assert field_type.description


# --- properties -------------------------------------------------------------------------

MARK = "QZ"  # never appears in a message: no message has these two capitals together


def _marked_strings() -> st.SearchStrategy[str]:
    """Strings carrying the mark, some of them close to valid values of some type."""
    near_misses = st.sampled_from(
        [
            "{m}@example.com",
            "{m}@@example.com",
            "+353{m}1234567",
            "2024-02-30{m}",
            "192.0.2.{m}",
            "https://{m}.example.com/ x",
            "https://u:{m}@example.com/",
            "IE29{m}93115212345678",
            "4111 {m} 1111 1111",
            "{m}\x00",
            "{m}\n{m}",
            "{m} {m}",
        ]
    )
    return st.one_of(
        st.text().map(lambda text: MARK + text),
        st.text().map(lambda text: text + MARK),
        near_misses.map(lambda template: template.format(m=MARK)),
    )


def _marked_values() -> st.SearchStrategy[object]:
    strings = _marked_strings()
    return st.one_of(
        strings,
        st.lists(strings, max_size=3),
        st.dictionaries(strings, strings, max_size=3),
        st.dictionaries(st.sampled_from(["lat", "lon", "k"]), strings, max_size=3),
        st.dictionaries(st.text(min_size=1, max_size=5), strings, max_size=3),
    )


def _assert_value_not_leaked(error: InvalidFieldValue) -> None:
    rendered = [str(error), repr(error), *map(str, error.args)]
    rendered.append("".join(traceback.format_exception(error)))
    for text in rendered:
        assert MARK not in text
        assert MARK.lower() not in text
    # Nothing that quotes the value rides along as a cause or context.
    assert error.__cause__ is None
    assert error.__context__ is None


@pytest.mark.parametrize("type_name", sorted(FIELD_TYPES))
@given(value=_marked_values())
def test_messages_never_contain_the_value(type_name: str, value: object) -> None:
    refused: InvalidFieldValue | None = None
    try:
        FIELD_TYPES[type_name].validate("f", value)
    except InvalidFieldValue as error:
        refused = error
    if refused is not None:
        _assert_value_not_leaked(refused)


SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=20),
    st.binary(max_size=4),
)
ANY_VALUE = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.tuples(children, children),
        st.dictionaries(st.text(max_size=8), children, max_size=4),
    ),
    max_leaves=8,
)


@pytest.mark.parametrize("type_name", sorted(FIELD_TYPES))
@given(value=ANY_VALUE)
def test_any_input_normalises_idempotently_or_is_refused(type_name: str, value: object) -> None:
    validate = FIELD_TYPES[type_name].validate
    try:
        result = validate("f", value)
    except InvalidFieldValue as error:
        refused: InvalidFieldValue | None = error
    else:
        refused = None
        assert validate("f", result) == result
    assert refused is None or refused.__context__ is None
