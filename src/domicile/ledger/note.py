"""C2SP signed notes with Ed25519 signatures (https://c2sp.org/signed-note).

A signed note is UTF-8 text ending in a newline, a blank line, then one
signature line per signer: ``— <key name> base64(key ID || signature)``.
Keys travel as strings in the golang.org/x/mod/sumdb/note encoding:
verifier keys ``<name>+<hex key ID>+base64(type || public key)`` and signer
keys ``PRIVATE+KEY+<name>+<hex key ID>+base64(type || seed)``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from domicile.errors import IntegrityError, LedgerError, MalformedNote

ED25519_TYPE = 0x01
"""Signature type byte of plain Ed25519 note signatures ("Signature types")."""

MAX_NOTE_SIZE = 1 << 20
"""Largest signed note accepted, in bytes."""

MAX_SIGNATURES = 100
"""Most signature lines accepted in one note (the spec requires at least 16)."""

SIGNATURE_PREFIX = "— "
"""Em dash (U+2014) and space, which open every signature line ("Format")."""

_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")
_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?", re.ASCII)
_KEY_ID = re.compile(r"[0-9a-f]{8}", re.ASCII)


class Signer(Protocol):
    """Anything that signs note text under a key name and key ID."""

    @property
    def name(self) -> str:
        """The key name written on the signature line."""
        ...

    @property
    def key_id(self) -> int:
        """The 32-bit key ID that opens the signature."""
        ...

    def sign(self, message: bytes) -> bytes:
        """Return the signature of ``message`` (without the key ID)."""
        ...


class Verifier(Protocol):
    """Anything that checks note signatures of one key name and key ID."""

    @property
    def name(self) -> str:
        """The key name the verifier answers to."""
        ...

    @property
    def key_id(self) -> int:
        """The 32-bit key ID the verifier answers to."""
        ...

    def is_valid_signature(self, message: bytes, signature: bytes) -> bool:
        """Whether ``signature`` (without the key ID) signs ``message``."""
        ...


@dataclass(frozen=True, slots=True)
class NoteSignature:
    """One signature line: key name, key ID and the signature bytes after the ID."""

    name: str
    key_id: int
    signature: bytes

    def __post_init__(self) -> None:
        _check_name(self.name)
        if not 0 <= self.key_id <= 0xFFFFFFFF:
            raise MalformedNote(f"key id `{self.key_id}` is not a 32-bit number")
        if not self.signature:
            raise MalformedNote("signature is empty")

    @property
    def encoded(self) -> str:
        """base64(key ID || signature), as on the signature line."""
        return base64.b64encode(self.key_id.to_bytes(4, "big") + self.signature).decode("ascii")

    @property
    def line(self) -> str:
        """The full signature line, newline included."""
        return f"{SIGNATURE_PREFIX}{self.name} {self.encoded}\n"


@dataclass(frozen=True, slots=True)
class Note:
    """A parsed signed note whose signatures are not yet verified."""

    text: str
    signatures: tuple[NoteSignature, ...]


@dataclass(frozen=True, slots=True)
class OpenedNote:
    """A note with at least one verified signature; other keys' signatures kept aside."""

    text: str
    verified: tuple[NoteSignature, ...]
    unverified: tuple[NoteSignature, ...]


@dataclass(frozen=True, slots=True)
class Ed25519Verifier:
    """Checks Ed25519 note signatures (type 0x01) of one named public key."""

    name: str
    public_key: bytes
    _key: Ed25519PublicKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_name(self.name)
        object.__setattr__(self, "_key", load_ed25519_public_key(self.public_key))

    @classmethod
    def from_key(cls, verifier_key: str) -> Ed25519Verifier:
        """Parse a verifier key `name+keyid+base64(0x01||pubkey)`."""
        return parse_verifier_key(verifier_key)

    @property
    def key_id(self) -> int:
        """SHA-256(name || 0x0A || 0x01 || public key)[:4] ("Ed25519 signatures")."""
        return key_id(self.name, bytes([ED25519_TYPE]) + self.public_key)

    @property
    def verifier_key(self) -> str:
        """The verifier key string of this key."""
        return encode_verifier_key(self.name, bytes([ED25519_TYPE]) + self.public_key)

    def is_valid_signature(self, message: bytes, signature: bytes) -> bool:
        """Whether ``signature`` is a valid Ed25519 signature of ``message``."""
        return is_valid_ed25519_signature(self._key, message, signature)


class Ed25519Signer:
    """Signs notes with a named Ed25519 key (type 0x01); the key never shows in `repr`."""

    __slots__ = ("_key", "key_id", "name", "public_key")

    name: str
    key_id: int
    public_key: bytes

    def __init__(self, name: str, seed: bytes) -> None:
        _check_name(name)
        self._key = load_ed25519_private_key(seed)
        self.name = name
        self.public_key = self._key.public_key().public_bytes_raw()
        self.key_id = key_id(name, bytes([ED25519_TYPE]) + self.public_key)

    @classmethod
    def from_key(cls, signer_key: str) -> Ed25519Signer:
        """Parse a signer key `PRIVATE+KEY+name+keyid+base64(0x01||seed)`."""
        name, claimed_id, material = decode_signer_key(signer_key)
        if material[0] != ED25519_TYPE:
            raise MalformedNote(f"signer key for `{name}` is not an ed25519 note key")
        signer = cls(name, material[1:])
        if signer.key_id != claimed_id:
            raise MalformedNote(f"signer key id for `{name}` does not match its key")
        return signer

    def sign(self, message: bytes) -> bytes:
        """Return the Ed25519 signature of ``message``."""
        return self._key.sign(message)

    def verifier(self) -> Ed25519Verifier:
        """Return the matching verifier."""
        return Ed25519Verifier(self.name, self.public_key)

    def __repr__(self) -> str:
        return f"Ed25519Signer(name={self.name!r}, key_id={self.key_id:08x})"


def generate_signer_key(name: str) -> tuple[str, str]:
    """Generate an Ed25519 key; return (signer key, verifier key) strings."""
    _check_name(name)
    private = Ed25519PrivateKey.generate()
    seed = private.private_bytes_raw()
    public = private.public_key().public_bytes_raw()
    material = bytes([ED25519_TYPE]) + public
    signer_key = encode_signer_key(name, key_id(name, material), bytes([ED25519_TYPE]) + seed)
    return signer_key, encode_verifier_key(name, material)


def parse_verifier_key(verifier_key: str) -> Ed25519Verifier:
    """Parse an Ed25519 verifier key `name+keyid+base64(0x01||pubkey)` strictly."""
    name, _, material = decode_verifier_key(verifier_key)
    if material[0] != ED25519_TYPE:
        raise MalformedNote(
            f"verifier key for `{name}` has signature type {material[0]:#04x}, not ed25519"
        )
    return Ed25519Verifier(name, material[1:])


def key_id(name: str, material: bytes) -> int:
    """Return SHA-256(name || 0x0A || type || public key)[:4] as an integer ("Signatures")."""
    digest = hashlib.sha256(name.encode("utf-8") + b"\n" + material).digest()
    return int.from_bytes(digest[:4], "big")


def encode_verifier_key(name: str, material: bytes) -> str:
    """Return the verifier key string `name+keyid+base64(type||public key)`."""
    _check_name(name)
    encoded = base64.b64encode(material).decode("ascii")
    return f"{name}+{key_id(name, material):08x}+{encoded}"


def encode_signer_key(name: str, key_id_value: int, material: bytes) -> str:
    """Return the signer key string `PRIVATE+KEY+name+keyid+base64(type||seed)`."""
    _check_name(name)
    encoded = base64.b64encode(material).decode("ascii")
    return f"PRIVATE+KEY+{name}+{key_id_value:08x}+{encoded}"


def decode_verifier_key(verifier_key: str) -> tuple[str, int, bytes]:
    """Split a verifier key into (name, key ID, type || public key), checking the ID."""
    # Base64 may contain `+`; the name and the key id cannot.
    parts = verifier_key.split("+", 2)
    if len(parts) != 3:
        raise MalformedNote("verifier key must be `name+keyid+key`")
    name, hex_id, encoded = parts
    _check_name(name)
    if not _KEY_ID.fullmatch(hex_id):
        raise MalformedNote(f"verifier key id `{hex_id}` is not 8 lowercase hex digits")
    material = decode_base64(encoded)
    if not material:
        raise MalformedNote(f"verifier key for `{name}` is empty")
    if key_id(name, material) != int(hex_id, 16):
        raise MalformedNote(f"verifier key id `{hex_id}` does not match the key of `{name}`")
    return name, int(hex_id, 16), material


def decode_signer_key(signer_key: str) -> tuple[str, int, bytes]:
    """Split a signer key into (name, claimed key ID, type || seed); the ID is not checked."""
    # Never echo the key in errors: it is a secret.
    parts = signer_key.split("+", 4)
    if len(parts) != 5 or parts[0] != "PRIVATE" or parts[1] != "KEY":
        raise MalformedNote("signer key must be `PRIVATE+KEY+name+keyid+key`")
    name, hex_id, encoded = parts[2:]
    _check_name(name)
    if not _KEY_ID.fullmatch(hex_id):
        raise MalformedNote(f"signer key id for `{name}` is not 8 lowercase hex digits")
    try:
        material = decode_base64(encoded)
    except MalformedNote:
        raise MalformedNote(f"signer key for `{name}` is not valid base64") from None
    if not material:
        raise MalformedNote(f"signer key for `{name}` is empty")
    return name, int(hex_id, 16), material


def is_valid_key_name(name: str) -> bool:
    """Whether ``name`` is a valid key name: non-empty, no spaces, `+` or control characters."""
    # str.isspace matches the Unicode White_Space characters; control
    # characters are refused too, since no note could carry them.
    if not name or "+" in name or _CONTROL.search(name) or any(c.isspace() for c in name):
        return False
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def decode_base64(text: str) -> bytes:
    """Decode canonical standard base64 (RFC 4648 §4, padded); reject anything else."""
    if not _BASE64.fullmatch(text):
        raise MalformedNote("value is not canonical base64")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedNote("value is not canonical base64") from exc
    # Unused low bits of the last character must be zero: one spelling per value.
    if base64.b64encode(data).decode("ascii") != text:
        raise MalformedNote("value is not canonical base64")
    return data


def parse_note(data: bytes | str) -> Note:
    """Parse a signed note strictly (signatures are not verified)."""
    raw = _note_bytes(data)
    if len(raw) > MAX_NOTE_SIZE:
        raise MalformedNote(f"note is larger than {MAX_NOTE_SIZE} bytes")
    try:
        text_all = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedNote("note is not valid utf-8") from exc
    if _CONTROL.search(text_all):
        raise MalformedNote("note contains a control character other than newline")
    # The text ends at the last blank line ("Format"); signature lines follow.
    split = text_all.rfind("\n\n")
    if split < 0:
        raise MalformedNote("note has no blank line before its signatures")
    text, block = text_all[: split + 1], text_all[split + 2 :]
    if not block or not block.endswith("\n"):
        raise MalformedNote("note signatures must be newline-terminated lines")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise MalformedNote(f"note has more than {MAX_SIGNATURES} signatures")
    return Note(text, tuple(_parse_signature_line(line) for line in lines))


def open_note(data: bytes | str, verifiers: Iterable[Verifier]) -> OpenedNote:
    """Parse a note and verify it against known keys ("Signatures").

    Signatures from unknown (name, key ID) pairs are kept unverified. A
    signature from a known key that does not verify rejects the note, and so
    does a note with no verified signature at all.
    """
    note = parse_note(data)
    known = _index_verifiers(verifiers)
    message = note.text.encode("utf-8")
    verified: dict[tuple[str, int], NoteSignature] = {}
    unverified: dict[NoteSignature, None] = {}
    for sig in note.signatures:
        verifier = known.get((sig.name, sig.key_id))
        if verifier is None:
            unverified.setdefault(sig)
            continue
        if not verifier.is_valid_signature(message, sig.signature):
            raise IntegrityError(f"signature by `{sig.name}` ({sig.key_id:08x}) does not verify")
        verified.setdefault((sig.name, sig.key_id), sig)
    if not verified:
        raise IntegrityError("note has no valid signature from a trusted key")
    return OpenedNote(note.text, tuple(verified.values()), tuple(unverified))


def format_note(text: str, signatures: Iterable[NoteSignature]) -> str:
    """Assemble a signed note from its text and signature lines."""
    _check_text(text)
    sigs = list(signatures)
    if not sigs:
        raise MalformedNote("a signed note needs at least one signature")
    if len(sigs) > MAX_SIGNATURES:
        raise MalformedNote(f"note has more than {MAX_SIGNATURES} signatures")
    note = text + "\n" + "".join(sig.line for sig in sigs)
    if len(note.encode("utf-8")) > MAX_NOTE_SIZE:
        raise MalformedNote(f"note is larger than {MAX_NOTE_SIZE} bytes")
    return note


def sign_note(text: str, signers: Sequence[Signer], *, keep: Iterable[NoteSignature] = ()) -> str:
    """Sign ``text`` with every signer; kept signatures of other keys come first."""
    _check_text(text)
    message = text.encode("utf-8")
    fresh = [NoteSignature(s.name, s.key_id, s.sign(message)) for s in signers]
    replaced = {(s.name, s.key_id) for s in fresh}
    kept = [s for s in keep if (s.name, s.key_id) not in replaced]
    return format_note(text, [*kept, *fresh])


def load_ed25519_public_key(public_key: bytes) -> Ed25519PublicKey:
    """Load a raw 32-byte Ed25519 public key."""
    if len(public_key) != 32:
        raise MalformedNote(f"ed25519 public key must be 32 bytes, got {len(public_key)}")
    try:
        return Ed25519PublicKey.from_public_bytes(bytes(public_key))
    except ValueError as exc:
        raise MalformedNote("ed25519 public key is invalid") from exc


def load_ed25519_private_key(seed: bytes) -> Ed25519PrivateKey:
    """Load a raw 32-byte Ed25519 private key seed."""
    if len(seed) != 32:
        raise MalformedNote(f"ed25519 seed must be 32 bytes, got {len(seed)}")
    try:
        return Ed25519PrivateKey.from_private_bytes(bytes(seed))
    except ValueError as exc:
        raise MalformedNote("ed25519 seed is invalid") from exc


def is_valid_ed25519_signature(key: Ed25519PublicKey, message: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is a 64-byte Ed25519 signature of ``message`` by ``key``."""
    if len(signature) != 64:
        return False
    try:
        key.verify(bytes(signature), message)
    except InvalidSignature:
        return False
    return True


def _parse_signature_line(line: str) -> NoteSignature:
    if not line.startswith(SIGNATURE_PREFIX):
        raise MalformedNote("signature line does not start with an em dash and a space")
    name, sep, encoded = line[len(SIGNATURE_PREFIX) :].partition(" ")
    if not sep or not is_valid_key_name(name):
        raise MalformedNote("signature line has no valid key name")
    raw = decode_base64(encoded)
    # Four bytes of key ID and at least one byte of signature.
    if len(raw) < 5:
        raise MalformedNote(f"signature by `{name}` is too short")
    return NoteSignature(name, int.from_bytes(raw[:4], "big"), raw[4:])


def _index_verifiers(verifiers: Iterable[Verifier]) -> dict[tuple[str, int], Verifier]:
    known: dict[tuple[str, int], Verifier] = {}
    for verifier in verifiers:
        slot = (verifier.name, verifier.key_id)
        if slot in known and known[slot] != verifier:
            # Two keys under one (name, key ID): the trust configuration is broken.
            raise LedgerError(f"two verifier keys share name `{slot[0]}` and id {slot[1]:08x}")
        known[slot] = verifier
    return known


def _note_bytes(data: bytes | str) -> bytes:
    if isinstance(data, str):
        try:
            return data.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise MalformedNote("note is not valid utf-8") from exc
    return bytes(data)


def _check_text(text: str) -> None:
    if not text.endswith("\n"):
        raise MalformedNote("note text must end with a newline")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise MalformedNote("note text is not valid utf-8") from exc
    if _CONTROL.search(text):
        raise MalformedNote("note text contains a control character other than newline")


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not is_valid_key_name(name):
        raise MalformedNote(f"`{name}` is not a valid key name")
