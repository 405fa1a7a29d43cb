"""C2SP tlog-checkpoint: the signed tree head of a log (https://c2sp.org/tlog-checkpoint).

The note text is the origin line, the tree size in decimal, the base64 root
hash, then optional extension lines, each ending in a newline ("Note text").
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from domicile.errors import MalformedNote
from domicile.ledger.merkle import HASH_SIZE
from domicile.ledger.note import (
    NoteSignature,
    OpenedNote,
    Signer,
    Verifier,
    decode_base64,
    open_note,
    sign_note,
)

MAX_TREE_SIZE = (1 << 64) - 1
"""Largest tree size a checkpoint may state (uint64, as in every implementation)."""

_CONTROL = re.compile(r"[\x00-\x1f]")
# "No leading zeroes (unless the tree is empty)"; ASCII digits only.
_SIZE = re.compile(r"0|[1-9][0-9]{0,19}", re.ASCII)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A log's tree head: origin, tree size, root hash and opaque extension lines."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_line(self.origin, "origin")
        if isinstance(self.size, bool) or not 0 <= self.size <= MAX_TREE_SIZE:
            raise MalformedNote(f"tree size `{self.size}` is not a uint64")
        if len(self.root_hash) != HASH_SIZE:
            raise MalformedNote(f"root hash must be {HASH_SIZE} bytes, got {len(self.root_hash)}")
        object.__setattr__(self, "root_hash", bytes(self.root_hash))
        object.__setattr__(self, "extensions", tuple(self.extensions))
        for line in self.extensions:
            _check_line(line, "extension line")

    @property
    def text(self) -> str:
        """The checkpoint as note text (what signers sign)."""
        return format_checkpoint(self)


def format_checkpoint(checkpoint: Checkpoint) -> str:
    """Return the note text of a checkpoint, final newline included."""
    root = base64.b64encode(checkpoint.root_hash).decode("ascii")
    lines = [checkpoint.origin, str(checkpoint.size), root, *checkpoint.extensions]
    return "".join(line + "\n" for line in lines)


def parse_checkpoint(text: str) -> Checkpoint:
    """Parse checkpoint note text strictly; it must be exactly what format_checkpoint yields."""
    if not text.endswith("\n"):
        raise MalformedNote("checkpoint must end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise MalformedNote("checkpoint needs an origin, a size and a root hash line")
    origin, size_text, root_text, *extensions = lines
    if not _SIZE.fullmatch(size_text):
        raise MalformedNote(f"checkpoint size `{size_text}` is not a canonical decimal number")
    try:
        root_hash = decode_base64(root_text)
    except MalformedNote:
        raise MalformedNote(f"checkpoint root hash `{root_text}` is not canonical base64") from None
    return Checkpoint(origin, int(size_text), root_hash, tuple(extensions))


def sign_checkpoint(
    checkpoint: Checkpoint, signers: Sequence[Signer], *, keep: Iterable[NoteSignature] = ()
) -> str:
    """Return the checkpoint as a signed note, signed by every signer."""
    return sign_note(format_checkpoint(checkpoint), signers, keep=keep)


def open_checkpoint(
    data: bytes | str, verifiers: Iterable[Verifier]
) -> tuple[Checkpoint, OpenedNote]:
    """Verify a signed checkpoint against known keys and parse its text."""
    opened = open_note(data, verifiers)
    return parse_checkpoint(opened.text), opened


def _check_line(line: str, what: str) -> None:
    # "At least three non-empty lines": no line may be empty, and no line may
    # hold a newline or any other control character a note cannot carry.
    if not isinstance(line, str) or not line:
        raise MalformedNote(f"checkpoint {what} is empty")
    if _CONTROL.search(line):
        raise MalformedNote(f"checkpoint {what} contains a control character")
    try:
        line.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise MalformedNote(f"checkpoint {what} is not valid utf-8") from exc
