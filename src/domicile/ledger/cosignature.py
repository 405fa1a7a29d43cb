"""C2SP tlog-cosignature, Ed25519 cosignature/v1 (https://c2sp.org/tlog-cosignature).

A witness cosigns a checkpoint with a note signature whose bytes are
``timestamp (u64, big-endian) || Ed25519 signature``, made over
``"cosignature/v1\\ntime <timestamp>\\n" || checkpoint note text``
("Format", "Ed25519 signed message"). Its key ID uses signature type 0x04.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from domicile.errors import IntegrityError, MalformedNote
from domicile.ledger.checkpoint import Checkpoint, format_checkpoint
from domicile.ledger.note import (
    NoteSignature,
    decode_signer_key,
    decode_verifier_key,
    encode_signer_key,
    encode_verifier_key,
    is_valid_ed25519_signature,
    is_valid_key_name,
    key_id,
    load_ed25519_private_key,
    load_ed25519_public_key,
)

COSIGNATURE_V1_TYPE = 0x04
"""Signature type byte of timestamped Ed25519 cosignatures (signed-note "Signature types")."""

MAX_TIMESTAMP = (1 << 63) - 1
"""Largest cosignature timestamp ("It MUST NOT exceed 2^63 - 1")."""

SIGNATURE_SIZE = 8 + 64
"""Bytes of a cosignature after its key ID: timestamp and Ed25519 signature."""


@dataclass(frozen=True, slots=True)
class CosignatureVerifier:
    """Checks cosignature/v1 signatures of one named witness key."""

    name: str
    public_key: bytes
    _key: Ed25519PublicKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not is_valid_key_name(self.name):
            raise MalformedNote(f"`{self.name}` is not a valid key name")
        object.__setattr__(self, "_key", load_ed25519_public_key(self.public_key))

    @classmethod
    def from_key(cls, verifier_key: str) -> CosignatureVerifier:
        """Parse a witness verifier key `name+keyid+base64(0x04||pubkey)`."""
        return parse_cosigner_key(verifier_key)

    @property
    def key_id(self) -> int:
        """SHA-256(name || "\\n" || 0x04 || public key)[:4] ("Format")."""
        return key_id(self.name, bytes([COSIGNATURE_V1_TYPE]) + self.public_key)

    @property
    def verifier_key(self) -> str:
        """The witness verifier key string."""
        return encode_verifier_key(self.name, bytes([COSIGNATURE_V1_TYPE]) + self.public_key)

    def is_valid_signature(self, message: bytes, signature: bytes) -> bool:
        """Whether ``signature`` (timestamp || sig) cosigns the note text ``message``."""
        if len(signature) != SIGNATURE_SIZE:
            return False
        timestamp = int.from_bytes(signature[:8], "big")
        if timestamp > MAX_TIMESTAMP:
            return False
        signed = cosigned_message(message, timestamp)
        return is_valid_ed25519_signature(self._key, signed, signature[8:])


class Cosigner:
    """A witness key that makes cosignature/v1 signatures; the key never shows in `repr`."""

    __slots__ = ("_key", "key_id", "name", "public_key")

    name: str
    key_id: int
    public_key: bytes

    def __init__(self, name: str, seed: bytes) -> None:
        if not is_valid_key_name(name):
            raise MalformedNote(f"`{name}` is not a valid key name")
        self._key: Ed25519PrivateKey = load_ed25519_private_key(seed)
        self.name = name
        self.public_key = self._key.public_key().public_bytes_raw()
        self.key_id = key_id(name, bytes([COSIGNATURE_V1_TYPE]) + self.public_key)

    @classmethod
    def from_key(cls, signer_key: str) -> Cosigner:
        """Parse a witness signer key `PRIVATE+KEY+name+keyid+base64(0x04||seed)`."""
        name, claimed_id, material = decode_signer_key(signer_key)
        if material[0] != COSIGNATURE_V1_TYPE:
            raise MalformedNote(f"signer key for `{name}` is not a cosignature/v1 key")
        cosigner = cls(name, material[1:])
        if cosigner.key_id != claimed_id:
            raise MalformedNote(f"signer key id for `{name}` does not match its key")
        return cosigner

    def cosign(self, checkpoint: Checkpoint, timestamp: int) -> NoteSignature:
        """Cosign ``checkpoint`` as of ``timestamp`` (POSIX seconds)."""
        signed = cosigned_message(format_checkpoint(checkpoint).encode("utf-8"), timestamp)
        signature = timestamp.to_bytes(8, "big") + self._key.sign(signed)
        return NoteSignature(self.name, self.key_id, signature)

    def verifier(self) -> CosignatureVerifier:
        """Return the matching verifier."""
        return CosignatureVerifier(self.name, self.public_key)

    def __repr__(self) -> str:
        return f"Cosigner(name={self.name!r}, key_id={self.key_id:08x})"


def generate_cosigner_key(name: str) -> tuple[str, str]:
    """Generate a witness key; return (signer key, verifier key) strings."""
    if not is_valid_key_name(name):
        raise MalformedNote(f"`{name}` is not a valid key name")
    private = Ed25519PrivateKey.generate()
    material = bytes([COSIGNATURE_V1_TYPE]) + private.public_key().public_bytes_raw()
    seed_material = bytes([COSIGNATURE_V1_TYPE]) + private.private_bytes_raw()
    signer_key = encode_signer_key(name, key_id(name, material), seed_material)
    return signer_key, encode_verifier_key(name, material)


def parse_cosigner_key(verifier_key: str) -> CosignatureVerifier:
    """Parse a witness verifier key `name+keyid+base64(0x04||pubkey)` strictly."""
    name, _, material = decode_verifier_key(verifier_key)
    if material[0] != COSIGNATURE_V1_TYPE:
        raise MalformedNote(
            f"verifier key for `{name}` has signature type {material[0]:#04x}, not cosignature/v1"
        )
    return CosignatureVerifier(name, material[1:])


def cosigned_message(note_text: bytes, timestamp: int) -> bytes:
    """Return the bytes a cosignature/v1 signs ("Ed25519 signed message")."""
    _check_timestamp(timestamp)
    return b"cosignature/v1\ntime %d\n" % timestamp + note_text


def cosign_checkpoint(checkpoint: Checkpoint, cosigner: Cosigner, timestamp: int) -> NoteSignature:
    """Return ``cosigner``'s cosignature of ``checkpoint`` as of ``timestamp``."""
    return cosigner.cosign(checkpoint, timestamp)


def cosignature_timestamp(signature: NoteSignature) -> int:
    """Return the timestamp a cosignature claims, without verifying it."""
    if len(signature.signature) != SIGNATURE_SIZE:
        raise MalformedNote(
            f"cosignature by `{signature.name}` must be {SIGNATURE_SIZE} bytes after its key id"
        )
    timestamp = int.from_bytes(signature.signature[:8], "big")
    _check_timestamp(timestamp)
    return timestamp


def verify_cosignature(
    checkpoint: Checkpoint, signature: NoteSignature, verifier: CosignatureVerifier
) -> None:
    """Check that ``signature`` is ``verifier``'s valid cosignature of ``checkpoint``."""
    if (signature.name, signature.key_id) != (verifier.name, verifier.key_id):
        raise IntegrityError(
            f"cosignature by `{signature.name}` ({signature.key_id:08x}) is not from "
            f"`{verifier.name}` ({verifier.key_id:08x})"
        )
    cosignature_timestamp(signature)
    message = format_checkpoint(checkpoint).encode("utf-8")
    if not verifier.is_valid_signature(message, signature.signature):
        raise IntegrityError(f"cosignature by `{signature.name}` does not verify")


def open_cosignature(
    checkpoint: Checkpoint, signature: NoteSignature, verifier: CosignatureVerifier
) -> int:
    """Verify a cosignature of ``checkpoint`` and return its timestamp."""
    verify_cosignature(checkpoint, signature, verifier)
    return cosignature_timestamp(signature)


def _check_timestamp(timestamp: int) -> None:
    if isinstance(timestamp, bool) or not 0 <= timestamp <= MAX_TIMESTAMP:
        raise MalformedNote(f"cosignature timestamp `{timestamp}` is not between 0 and 2^63-1")
