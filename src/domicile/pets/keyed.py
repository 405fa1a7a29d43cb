"""Keyed transforms: pseudonyms (HMAC-SHA256) and reversible tokens (AES-SIV).

Both bind the field name, so equal values in two fields do not give equal outputs, and
both read the canonical JSON of a normalised value (sorted keys, compact, UTF-8), so a
value has exactly one pseudonym and one token per domain. Neither ever hashes personal
data without a key: an unkeyed hash of an email address is reversed by hashing guesses.

* ``ps_`` + 32 base32 characters: the first 160 bits of HMAC-SHA256 under the domain's
  key. One-way; the home region re-identifies by recomputing over its own subjects.
* ``tk_`` + base64url of AES-SIV (RFC 5297) ciphertext, associated data binding region,
  field and domain. Deterministic (equal values give equal tokens, which is what a join
  needs) and resolvable only with the home region's token key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import json.encoder
from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESSIV

from domicile.catalog.catalog import JsonValue
from domicile.errors import IntegrityError, InvalidFieldValue, InvalidInput
from domicile.pets.keys import PetKeys, verify_domain

__all__ = [
    "PSEUDONYM_PREFIX",
    "TOKEN_PREFIX",
    "canonical_value",
    "is_pseudonym",
    "pseudonymise",
    "resolve_token",
    "tokenise",
]

PSEUDONYM_PREFIX = "ps_"
"""Every pseudonym starts with this, so nobody mistakes one for a value."""
TOKEN_PREFIX = "tk_"  # noqa: S105 - a prefix, not a secret
"""Every reversible token starts with this."""

_PSEUDONYM_BYTES = 20  # 160 bits: no collision expected below ~10^24 values per domain
_PSEUDONYM_LABEL = b"domicile-pseudonym/v1\x00"
_TOKEN_LABEL = b"domicile-token/v1"
_MAX_TOKEN_CHARS = 1 << 20
_encode_string: Callable[[str], str] = json.encoder.encode_basestring


def canonical_value(field: str, value: JsonValue) -> bytes:
    """Return the canonical JSON bytes of a normalised value; InvalidFieldValue if not JSON."""
    if isinstance(value, str):  # the common case: the same bytes json.dumps gives, faster
        try:
            return _encode_string(value).encode("utf-8")
        except UnicodeEncodeError:
            pass  # a lone surrogate; refused below without chaining the value
        raise InvalidFieldValue(f"field `{field}` has a value that is not JSON")
    try:
        text = json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
        return text.encode("utf-8")
    except (TypeError, ValueError, RecursionError):
        pass  # outside the except block: the exception may quote the value
    raise InvalidFieldValue(f"field `{field}` has a value that is not JSON")


def pseudonymise(field: str, value: JsonValue, key: bytes) -> str:
    """Return the pseudonym of `value` in field `field` under a domain key."""
    message = _PSEUDONYM_LABEL + field.encode() + b"\x00" + canonical_value(field, value)
    # The standard library's one-shot HMAC runs in OpenSSL like `cryptography`'s, without
    # building a context object per value: it is the hot path of every export.
    mac = hmac.digest(key, message, hashlib.sha256)[:_PSEUDONYM_BYTES]
    return PSEUDONYM_PREFIX + base64.b32encode(mac).decode("ascii").lower()


def is_pseudonym(text: object) -> bool:
    """Return whether `text` has the shape of a pseudonym."""
    return (
        isinstance(text, str)
        and text.startswith(PSEUDONYM_PREFIX)
        and len(text) == len(PSEUDONYM_PREFIX) + 32
    )


def _associated_data(region: str, field: str, domain: str) -> list[bytes]:
    return [_TOKEN_LABEL, region.encode(), field.encode(), domain.encode()]


def tokenise(field: str, value: JsonValue, keys: PetKeys, domain: str) -> str:
    """Return a deterministic token that only the home region of `keys` can resolve."""
    verify_domain(domain)
    plaintext = canonical_value(field, value)
    sealed = AESSIV(keys.token_key()).encrypt(
        plaintext, _associated_data(keys.region, field, domain)
    )
    return TOKEN_PREFIX + base64.urlsafe_b64encode(sealed).decode("ascii").rstrip("=")


def resolve_token(field: str, token: str, keys: PetKeys, domain: str) -> JsonValue:
    """Return the value behind `token`; IntegrityError unless `keys` and binding match."""
    verify_domain(domain)
    if (
        not isinstance(token, str)
        or not token.startswith(TOKEN_PREFIX)
        or len(token) > _MAX_TOKEN_CHARS
    ):
        raise InvalidInput(f"not a token of field `{field}`")
    body = token[len(TOKEN_PREFIX) :]
    try:
        sealed = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput(f"not a token of field `{field}`") from exc
    try:
        plaintext = AESSIV(keys.token_key()).decrypt(
            sealed, _associated_data(keys.region, field, domain)
        )
    except InvalidTag as exc:
        raise IntegrityError(
            f"token of field `{field}` does not resolve in region `{keys.region}` "
            f"and domain `{domain}`"
        ) from exc
    value: JsonValue = json.loads(plaintext.decode("utf-8"))
    return value
