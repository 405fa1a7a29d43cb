"""Field types of the data catalog: one validator per type, raw value in, normalised value out.

A validator takes the field name (for the message) and the raw value, and returns the
normalised value or raises :class:`InvalidFieldValue`. Normalising is idempotent: a
validator accepts its own output and returns it unchanged.

The values are personal data, so messages name the field and the rule, never the value,
and no validator raises inside an ``except`` block: a third-party exception that quotes
the value (``ipaddress`` does) must not ride along as ``__context__``.
"""

from __future__ import annotations

import datetime
import ipaddress
import math
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING
from urllib.parse import SplitResult, urlsplit, urlunsplit

from domicile.errors import InvalidFieldValue
from domicile.residency.topology import is_country_code

if TYPE_CHECKING:
    from domicile.catalog.catalog import JsonValue

__all__ = ["FIELD_TYPES", "FieldType", "Validator"]

Validator = Callable[[str, object], "JsonValue"]
"""Signature of a validator: (field name, raw value) → normalised value."""

MAX_INTEGER = 2**63 - 1
"""Largest integer accepted anywhere (fits a signed 64-bit column)."""
MAX_OBJECT_ENTRIES = 64
"""Most entries in an `object` value."""
MAX_OBJECT_STRING_CHARS = 1024
"""Longest string inside an `object` value."""

# Every pattern is matched with fullmatch and spells digits [0-9]: \d and $ would let
# through non-ASCII digits and a trailing newline.
_EMAIL_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_DOMAIN_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_PHONE_PUNCTUATION = str.maketrans("", "", " -.()")
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_VISIBLE_ASCII = re.compile(r"[\x21-\x7e]+")
_TEXT_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_OBJECT_KEY = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_IBAN = re.compile(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}")
_CARD = re.compile(r"[0-9]{12,19}")
_URL_HOST = re.compile(r"[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?")
_CARD_PUNCTUATION = str.maketrans("", "", " -")
_SINGLE_LINE_FORBIDDEN = frozenset({"Cc", "Zl", "Zp"})


def _invalid(field: str, rule: str) -> InvalidFieldValue:
    return InvalidFieldValue(f"field `{field}` {rule}")


def _is_unicode(text: str) -> bool:
    """Return whether `text` is valid Unicode (no lone surrogates, so it encodes as UTF-8)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _string(field: str, value: object) -> str:
    """Return `value` if it is a valid Unicode string."""
    if not isinstance(value, str):
        raise _invalid(field, "must be a string")
    if not _is_unicode(value):
        raise _invalid(field, "is not valid Unicode text")
    return str(value)


def validate_email(field: str, value: object) -> str:
    """Return an email address with its domain lowercased (and IDNA-encoded)."""
    text = _string(field, value).strip()
    local, at, domain = text.rpartition("@")
    ascii_domain = _ascii_domain(domain)
    if not at or not _EMAIL_LOCAL.fullmatch(local) or len(local) > 64 or ascii_domain is None:
        raise _invalid(field, "is not a valid email address")
    address = f"{local}@{ascii_domain}"
    if len(address) > 254:
        raise _invalid(field, "is not a valid email address (over 254 characters)")
    return address


def _ascii_domain(domain: str) -> str | None:
    """Return `domain` as lowercase ASCII (IDNA for non-ASCII), or None if it is not one."""
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except ValueError:  # UnicodeError: a label IDNA cannot encode
            return None
    domain = domain.lower()
    labels = domain.split(".")
    if len(domain) > 253 or len(labels) < 2 or labels[-1].isdigit():
        return None
    if not all(_DOMAIN_LABEL.fullmatch(label) for label in labels):
        return None
    return domain


def validate_phone(field: str, value: object) -> str:
    """Return an E.164 number, `+` and digits only (spaces, dots, dashes, brackets dropped)."""
    compact = _string(field, value).strip().translate(_PHONE_PUNCTUATION)
    if not _E164.fullmatch(compact):
        raise _invalid(field, "is not an E.164 phone number (`+`, country code, number)")
    return compact


def validate_date(field: str, value: object) -> str:
    """Return an ISO 8601 calendar date `YYYY-MM-DD` (a `datetime.date` is accepted too)."""
    if isinstance(value, datetime.date) and not isinstance(value, datetime.datetime):
        return value.isoformat()
    text = _string(field, value).strip()
    parsed: datetime.date | None = None
    if _DATE.fullmatch(text):
        try:
            parsed = datetime.date.fromisoformat(text)
        except ValueError:
            parsed = None
    if parsed is None:
        raise _invalid(field, "is not a valid date (YYYY-MM-DD)")
    return parsed.isoformat()


def validate_ip_address(field: str, value: object) -> str:
    """Return an IPv4 or IPv6 address in its canonical (compressed, lowercase) form."""
    text = _string(field, value).strip()
    address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    if "%" not in text:  # a zone index names a local interface; not an address to keep
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            address = None
    if address is None:
        raise _invalid(field, "is not a valid IPv4 or IPv6 address")
    return str(address)


def validate_coordinates(field: str, value: object) -> dict[str, JsonValue]:
    """Return `{"lat": float, "lon": float}` from that object or from `[lat, lon]`."""
    shape = 'must be {"lat": number, "lon": number} or [lat, lon]'
    if isinstance(value, Mapping):
        if len(value) != 2 or "lat" not in value or "lon" not in value:
            raise _invalid(field, shape)
        lat, lon = value["lat"], value["lon"]
    elif isinstance(value, list | tuple):
        if len(value) != 2:
            raise _invalid(field, shape)
        lat, lon = value
    else:
        raise _invalid(field, shape)
    return {
        "lat": _degrees(field, lat, 90, "latitude"),
        "lon": _degrees(field, lon, 180, "longitude"),
    }


def _degrees(field: str, value: object, bound: int, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _invalid(field, f"has a {what} that is not a number")
    # Compare before float(): a huge int would overflow the conversion.
    if isinstance(value, float) and not math.isfinite(value):
        raise _invalid(field, f"has a {what} that is not a finite number")
    if not -bound <= value <= bound:
        raise _invalid(field, f"has a {what} outside -{bound}..{bound}")
    return float(value)


def validate_text(field: str, value: object) -> str:
    """Return free text unchanged; line breaks and tabs allowed, other control characters not."""
    text = _string(field, value)
    if _TEXT_CONTROLS.search(text):
        raise _invalid(field, "contains control characters")
    return text


def validate_string(field: str, value: object) -> str:
    """Return a short single-line string, NFC-normalised and stripped; empty is refused."""
    text = unicodedata.normalize("NFC", _string(field, value).strip()).strip()
    if not text:
        raise _invalid(field, "must not be empty")
    if any(unicodedata.category(char) in _SINGLE_LINE_FORBIDDEN for char in text):
        raise _invalid(field, "must be a single line without control characters")
    return text


def validate_identifier(field: str, value: object) -> str:
    """Return a device or advertising id: printable ASCII, no whitespace, case kept."""
    text = _string(field, value).strip()
    if not _VISIBLE_ASCII.fullmatch(text):
        raise _invalid(field, "must be printable ASCII without whitespace")
    return text


def validate_country(field: str, value: object) -> str:
    """Return an ISO 3166-1 alpha-2 country code, uppercased."""
    text = _string(field, value).strip()
    # ASCII first: "ß".upper() is "SS", a real code.
    code = text.upper() if text.isascii() else ""
    if not is_country_code(code):
        raise _invalid(field, "is not an ISO 3166-1 alpha-2 country code")
    return code


def validate_integer(field: str, value: object) -> int:
    """Return a non-negative integer (a count); booleans and floats are refused."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(field, "must be an integer")
    if not 0 <= value <= MAX_INTEGER:
        raise _invalid(field, f"must be between 0 and {MAX_INTEGER}")
    return int(value)


def validate_boolean(field: str, value: object) -> bool:
    """Return `true` or `false`; nothing else counts as a boolean."""
    if not isinstance(value, bool):
        raise _invalid(field, "must be true or false")
    return value


def validate_object(field: str, value: object) -> dict[str, JsonValue]:
    """Return a flat JSON object of scalars (settings), with bounded keys and entries."""
    if not isinstance(value, Mapping):
        raise _invalid(field, "must be a JSON object")
    if len(value) > MAX_OBJECT_ENTRIES:
        raise _invalid(field, f"has more than {MAX_OBJECT_ENTRIES} entries")
    result: dict[str, JsonValue] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not _OBJECT_KEY.fullmatch(key):
            raise _invalid(field, "has a key that is not 1–64 letters, digits, `_`, `-` or `.`")
        result[key] = _scalar(field, item)
    return result


def _scalar(field: str, value: object) -> JsonValue:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if not -MAX_INTEGER - 1 <= value <= MAX_INTEGER:
            raise _invalid(field, "has an integer outside the signed 64-bit range")
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _invalid(field, "has a number that is not finite")
        return float(value)
    if isinstance(value, str):
        text = _string(field, value)
        if len(text) > MAX_OBJECT_STRING_CHARS or _TEXT_CONTROLS.search(text):
            raise _invalid(
                field,
                f"has a string over {MAX_OBJECT_STRING_CHARS} characters or with control "
                "characters",
            )
        return text
    raise _invalid(field, "has a value that is not a string, number, boolean or null")


def validate_iban(field: str, value: object) -> str:
    """Return an IBAN in compact uppercase form, its ISO 13616 mod-97 check verified."""
    compact = "".join(_string(field, value).split())
    compact = compact.upper() if compact.isascii() else ""
    if not _IBAN.fullmatch(compact) or not _iban_checksum_ok(compact):
        raise _invalid(field, "is not a valid IBAN")
    return compact


def _iban_checksum_ok(iban: str) -> bool:
    """Return whether `iban` passes ISO 7064 mod 97-10 (ISO 13616-1 §6)."""
    rearranged = iban[4:] + iban[:4]
    digits = "".join(str(int(char, 36)) for char in rearranged)
    return int(digits) % 97 == 1


def validate_payment_card(field: str, value: object) -> str:
    """Return a card number as 12–19 digits, its Luhn check digit verified."""
    compact = _string(field, value).strip().translate(_CARD_PUNCTUATION)
    if not _CARD.fullmatch(compact) or not _luhn_ok(compact):
        raise _invalid(field, "is not a valid payment card number")
    return compact


def _luhn_ok(digits: str) -> bool:
    """Return whether `digits` passes the Luhn check (ISO/IEC 7812-1 annex B)."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        digit = int(char)
        if position % 2 == 1:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def validate_url(field: str, value: object) -> str:
    """Return an absolute http(s) URL without credentials, scheme and host lowercased."""
    text = _string(field, value).strip()
    parts = _split_url(text) if _VISIBLE_ASCII.fullmatch(text) else None
    if parts is None:
        raise _invalid(field, "is not an absolute http or https URL without credentials")
    scheme, netloc = parts.scheme.lower(), parts.netloc.lower()
    return urlunsplit((scheme, netloc, parts.path, parts.query, parts.fragment))


def _split_url(text: str) -> SplitResult | None:
    """Return the parts of an absolute http(s) URL with a sound host and no credentials."""
    try:
        parts = urlsplit(text)
        host, _port = parts.hostname, parts.port  # .port raises on a bad port
    except ValueError:
        return None
    if parts.scheme.lower() not in {"http", "https"} or not host:
        return None
    if parts.username is not None or parts.password is not None:
        return None
    if ":" in host:  # only an IPv6 literal has colons once the port is split off
        return parts if _is_ipv6(host) else None
    return parts if _URL_HOST.fullmatch(host) else None


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class FieldType:
    """A field type: its validator and the size limit a field of it gets by default."""

    name: str
    validate: Validator
    default_max_bytes: int
    description: str


def _types(*types: FieldType) -> Mapping[str, FieldType]:
    return MappingProxyType({t.name: t for t in types})


FIELD_TYPES: Mapping[str, FieldType] = _types(
    FieldType("email", validate_email, 256, "email address; domain lowercased"),
    FieldType("phone", validate_phone, 32, "E.164 phone number, e.g. +353861234567"),
    FieldType("date", validate_date, 16, "ISO 8601 calendar date YYYY-MM-DD"),
    FieldType("ip_address", validate_ip_address, 64, "IPv4 or IPv6 address, canonical form"),
    FieldType("coordinates", validate_coordinates, 96, '{"lat": -90..90, "lon": -180..180}'),
    FieldType("text", validate_text, 65_536, "free text, several lines"),
    FieldType("string", validate_string, 256, "short single-line text"),
    FieldType("identifier", validate_identifier, 256, "printable ASCII id, no whitespace"),
    FieldType("country", validate_country, 8, "ISO 3166-1 alpha-2 country code"),
    FieldType("integer", validate_integer, 32, "non-negative integer (a count)"),
    FieldType("boolean", validate_boolean, 8, "true or false"),
    FieldType("object", validate_object, 4096, "flat JSON object of scalars"),
    FieldType("iban", validate_iban, 64, "IBAN, mod-97 checked, compact uppercase"),
    FieldType("payment_card", validate_payment_card, 32, "card number, Luhn checked"),
    FieldType("url", validate_url, 2048, "absolute http(s) URL without credentials"),
)
"""Every field type a catalog may name, by name."""
