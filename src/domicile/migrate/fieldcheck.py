"""Catalog validation of one field's values, returning the bytes to seal as well.

`field_check(spec, limit)` gives a function that maps a raw legacy value to the pair
(`Catalog.validate`'s normalised value, `Catalog.encode`'s canonical JSON bytes) or
raises what `Catalog.validate` raises. It runs the catalog's own validator of the
field's type, with the catalog's size rules, except for inputs whose answer is plain
(stripped printable ASCII strings of a `string` field: NFC and the control-character
rules can neither change nor refuse them), and IPv4 addresses, email addresses, E.164
phone numbers and dates already in the form their validator returns. Canonical JSON of a
printable ASCII string without `"` or `\\` is the string in quotes; anything else goes
through `json.dumps` as in the catalog.
tests/unit/migrate/test_fieldcheck.py holds the two to the same answers.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Callable

from domicile.catalog.catalog import FieldSpec, JsonValue
from domicile.catalog.validators import FIELD_TYPES, MAX_INTEGER
from domicile.errors import InvalidFieldValue, PayloadTooLarge

FieldCheck = Callable[[object], tuple[JsonValue, bytes]]
"""raw value → (normalised value, canonical JSON bytes); raises InvalidInput."""

_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")
# validators.validate_email's own rules, for an address already in normal form (no
# surrounding space, lowercase ASCII domain): the local part's dot-atom, then labels.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_EMAIL = re.compile(rf"({_ATOM}(?:\.{_ATOM})*)@({_LABEL}(?:\.{_LABEL})+)")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# validators.validate_phone's result: `+` and digits (no space or punctuation to drop).
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
# Types whose normal form is exactly the text a pattern matches whole.
_WHOLE_MATCH = {"ip_address": _IPV4, "phone": _E164}


def encode_value(value: JsonValue) -> bytes | None:
    """`Catalog.encode`'s canonical JSON of a normalised value, or None if it is not JSON."""
    if type(value) is str and value.isascii() and value.isprintable():
        if '"' not in value and "\\" not in value:
            return b'"' + value.encode("ascii") + b'"'
    elif type(value) is int:
        return str(value).encode("ascii")
    try:
        text = json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except (TypeError, ValueError, RecursionError):
        return None
    return text.encode("utf-8")


def field_check(spec: FieldSpec, max_field_bytes: int | None) -> FieldCheck:
    """The check of one catalog field (see the module docstring)."""
    limit = spec.max_bytes if max_field_bytes is None else min(spec.max_bytes, max_field_bytes)
    too_large = f"field `{spec.name}` is over its size limit of {limit} bytes"
    name = spec.name
    validate = FIELD_TYPES[spec.type].validate

    def checked(raw: object) -> tuple[JsonValue, bytes]:
        # The catalog's order: the raw length, the type's validator, the encoded length.
        if isinstance(raw, str) and len(raw) > limit:
            raise PayloadTooLarge(too_large)
        value = validate(name, raw)
        encoded = encode_value(value)
        if encoded is None:
            raise InvalidFieldValue(f"field `{name}` has a value that is not JSON")
        if len(encoded) > limit:
            raise PayloadTooLarge(too_large)
        return value, encoded

    if spec.type == "string":

        def string(raw: object) -> tuple[JsonValue, bytes]:
            if type(raw) is str and raw.isascii() and raw.isprintable() and len(raw) <= limit:
                text = raw.strip()
                if text and '"' not in text and "\\" not in text and len(text) + 2 <= limit:
                    return text, b'"' + text.encode("ascii") + b'"'
            return checked(raw)

        return string
    if spec.type == "integer":

        def integer(raw: object) -> tuple[JsonValue, bytes]:
            if type(raw) is int and 0 <= raw <= MAX_INTEGER:
                encoded = str(raw).encode("ascii")
                if len(encoded) <= limit:
                    return raw, encoded
            return checked(raw)

        return integer
    if spec.type in _WHOLE_MATCH:  # a plain ASCII text in the pattern is its own value
        pattern = _WHOLE_MATCH[spec.type]

        def matching(raw: object) -> tuple[JsonValue, bytes]:
            if type(raw) is str and len(raw) + 2 <= limit and pattern.fullmatch(raw):
                return raw, b'"' + raw.encode("ascii") + b'"'
            return checked(raw)

        return matching
    if spec.type == "email":

        def email(raw: object) -> tuple[JsonValue, bytes]:
            if type(raw) is str and len(raw) <= 254 and len(raw) + 2 <= limit:
                match = _EMAIL.fullmatch(raw)
                if (
                    match is not None
                    and len(match[1]) <= 64
                    and len(match[2]) <= 253
                    and not match[2].rpartition(".")[2].isdigit()
                ):
                    return raw, b'"' + raw.encode("ascii") + b'"'
            return checked(raw)

        return email
    if spec.type == "date":

        def date(raw: object) -> tuple[JsonValue, bytes]:
            if type(raw) is str and len(raw) + 2 <= limit and _DATE.fullmatch(raw):
                try:
                    datetime.date.fromisoformat(raw)
                except ValueError:
                    return checked(raw)
                return raw, b'"' + raw.encode("ascii") + b'"'
            return checked(raw)

        return date
    return checked
