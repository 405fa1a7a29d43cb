"""C2SP tlog-proof bundles: an entry's inclusion proof and the checkpoint it leads to.

Format (https://c2sp.org/tlog-proof)::

    c2sp.org/tlog-proof@v1
    extra <base64 of the entry itself>
    index <decimal>
    <base64 proof hash, leaf sibling first>…

    <signed checkpoint, verbatim>

Domicile puts the entry bytes in `extra`, so a bundle can be checked offline with the
log's verifier key alone: the leaf hash is recomputed from the entry, the proof leads
to the checkpoint's root, and the checkpoint's signature is verified.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from domicile.errors import LedgerError, MalformedNote
from domicile.ledger.checkpoint import Checkpoint, open_checkpoint
from domicile.ledger.merkle import leaf_hash, verify_inclusion
from domicile.ledger.note import Verifier

HEADER = "c2sp.org/tlog-proof@v1"


@dataclass(frozen=True)
class ProofBundle:
    """A parsed tlog-proof."""

    index: int
    proof: tuple[bytes, ...]
    checkpoint_note: str
    extra: bytes | None = None


def format_bundle(bundle: ProofBundle) -> str:
    """Render a bundle as tlog-proof text."""
    lines = [HEADER]
    if bundle.extra is not None:
        lines.append("extra " + base64.b64encode(bundle.extra).decode())
    lines.append(f"index {bundle.index}")
    lines += [base64.b64encode(h).decode() for h in bundle.proof]
    return "\n".join(lines) + "\n\n" + bundle.checkpoint_note


def _b64(text: str, what: str) -> bytes:
    try:
        value = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedNote(f"{what} is not base64") from exc
    if base64.b64encode(value).decode() != text:
        raise MalformedNote(f"{what} is not canonical base64")
    return value


def parse_bundle(text: str) -> ProofBundle:
    """Parse tlog-proof text strictly."""
    head, sep, note = text.partition("\n\n")
    if not sep or not note:
        raise MalformedNote("proof bundle has no checkpoint after an empty line")
    lines = head.split("\n")
    if lines[0] != HEADER:
        raise MalformedNote(f"proof bundle does not start with `{HEADER}`")
    rest = lines[1:]
    extra = None
    if rest and rest[0].startswith("extra "):
        extra = _b64(rest[0][len("extra ") :], "extra data")
        rest = rest[1:]
    if not rest or not rest[0].startswith("index "):
        raise MalformedNote("proof bundle has no `index` line")
    digits = rest[0][len("index ") :]
    if not digits.isdigit() or not digits.isascii() or (digits != "0" and digits[0] == "0"):
        raise MalformedNote(f"proof bundle index `{digits[:30]}` is not a canonical decimal")
    proof = tuple(_b64(line, "proof hash") for line in rest[1:])
    if any(len(h) != 32 for h in proof):
        raise MalformedNote("proof hashes must be 32 bytes")
    return ProofBundle(int(digits), proof, note, extra)


def verify_bundle(
    text: str, verifiers: list[Verifier], *, entry: bytes | None = None
) -> tuple[Checkpoint, bytes]:
    """Check a bundle offline; return the checkpoint and the entry it proves.

    Raises MalformedNote, ProofError or LedgerError; returns only if the checkpoint is
    signed by one of `verifiers` and the entry is included in it.
    """
    bundle = parse_bundle(text)
    data = entry if entry is not None else bundle.extra
    if data is None:
        raise LedgerError("proof bundle carries no entry and none was given")
    checkpoint, _ = open_checkpoint(bundle.checkpoint_note, verifiers)
    verify_inclusion(
        leaf_hash(data), bundle.index, checkpoint.size, list(bundle.proof), checkpoint.root_hash
    )
    return checkpoint, data
