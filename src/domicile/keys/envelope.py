"""Envelope encryption of field values: AES-256-GCM under a per-subject data key.

The associated data binds every ciphertext to its subject, region and field, so a
ciphertext copied onto another subject, field or region fails to open.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from domicile.errors import IntegrityError

DATA_KEY_BYTES = 32
NONCE_BYTES = 12
# Version byte in front of every sealed value so the format can change later.
_FORMAT_V1 = b"\x01"
_AAD_LABEL = b"domicile-field/v1"
_LABEL_PART = len(_AAD_LABEL).to_bytes(2, "big") + _AAD_LABEL
_VERSION = _FORMAT_V1[0]
_BODY = 1 + NONCE_BYTES  # where the ciphertext starts
_SHORTEST = _BODY + 16  # a tag and nothing else


def new_data_key() -> bytes:
    """Return a fresh random 256-bit data key."""
    return AESGCM.generate_key(bit_length=256)


def field_aad(subject_id: str, region: str, field: str) -> bytes:
    """Associated data binding a sealed value to its subject, region and field."""
    # Length-prefixed parts: no two (subject, region, field) triples encode alike.
    s, r, f = subject_id.encode(), region.encode(), field.encode()
    return b"".join(
        (_LABEL_PART, len(s).to_bytes(2, "big"), s, len(r).to_bytes(2, "big"), r,
         len(f).to_bytes(2, "big"), f)
    )  # fmt: skip


def seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """Encrypt `plaintext` under `key`; the result carries its version byte and nonce."""
    nonce = os.urandom(NONCE_BYTES)
    return _FORMAT_V1 + nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def open_sealed(key: bytes, sealed: bytes, aad: bytes) -> bytes:
    """Decrypt a value made by `seal`; raise IntegrityError if anything was altered."""
    return open_sealed_with(AESGCM(key), sealed, aad)


def open_sealed_with(cipher: AESGCM, sealed: bytes, aad: bytes) -> bytes:
    """`open_sealed` with a cipher object made once for many values under one key."""
    if len(sealed) < 1 + NONCE_BYTES + 16 or sealed[:1] != _FORMAT_V1:
        raise IntegrityError("sealed value is truncated or of an unknown format")
    nonce = sealed[1 : 1 + NONCE_BYTES]
    try:
        return cipher.decrypt(nonce, sealed[1 + NONCE_BYTES :], aad)
    except InvalidTag as exc:
        raise IntegrityError("sealed value does not verify under its key and binding") from exc


def open_fields(
    key: bytes, subject_id: str, region: str, sealed: Mapping[str, bytes]
) -> dict[str, bytes]:
    """Open several sealed values of one subject (one cipher object for all of them).

    The same checks and bindings as `open_sealed` with `field_aad` for each field; the
    loop is `open_sealed_with` inlined, since a batch read or an export runs it for
    every field it sends.
    """
    decrypt = AESGCM(key).decrypt
    s, r = subject_id.encode(), region.encode()
    head = b"".join((_LABEL_PART, len(s).to_bytes(2, "big"), s, len(r).to_bytes(2, "big"), r))
    out: dict[str, bytes] = {}
    try:
        for name, blob in sealed.items():
            if len(blob) < _SHORTEST or blob[0] != _VERSION:
                raise IntegrityError("sealed value is truncated or of an unknown format")
            out[name] = decrypt(blob[1:_BODY], blob[_BODY:], head + _field_part(name))
    except InvalidTag as exc:
        raise IntegrityError("sealed value does not verify under its key and binding") from exc
    return out


@functools.lru_cache(maxsize=1024)
def _field_part(name: str) -> bytes:
    """The field's length-prefixed part of `field_aad` (names are few: the catalog's)."""
    encoded = name.encode()
    return len(encoded).to_bytes(2, "big") + encoded
