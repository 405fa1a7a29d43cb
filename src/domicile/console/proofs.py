"""The proof page's check, in pure code: a checkpoint's signature and an inclusion proof.

It uses only the project's pure ledger modules (RFC 9162 §2.1.3.2 inclusion, C2SP
signed notes), so what the console says about a proof is what `domicile verify` says.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from domicile.errors import DomicileError
from domicile.ledger.checkpoint import open_checkpoint
from domicile.ledger.merkle import leaf_hash, verify_inclusion
from domicile.ledger.note import Verifier


@dataclass(frozen=True)
class ProofCheck:
    """What the proof page shows: the hashes, the checkpoint and whether it all verifies."""

    index: int
    size: int
    leaf_hash: str  # hex
    path: tuple[str, ...]  # hex, leaf to root
    root: str  # hex, from the signed checkpoint
    verified: bool
    problem: str


def check_inclusion(
    entry: bytes, index: int, proof: Sequence[bytes], note: str, verifier: Verifier
) -> ProofCheck:
    """Verify the checkpoint `note` with the log's key, then the entry's inclusion under it."""
    leaf = leaf_hash(entry)
    path = tuple(h.hex() for h in proof)
    try:
        checkpoint, _ = open_checkpoint(note, [verifier])
    except DomicileError as exc:
        return ProofCheck(index, 0, leaf.hex(), path, "", False, f"checkpoint: {exc}")
    root = checkpoint.root_hash.hex()
    if checkpoint.origin != verifier.name:
        problem = f"checkpoint of `{checkpoint.origin}` is not this log's"
        return ProofCheck(index, checkpoint.size, leaf.hex(), path, root, False, problem)
    try:
        verify_inclusion(leaf, index, checkpoint.size, proof, checkpoint.root_hash)
    except DomicileError as exc:
        return ProofCheck(index, checkpoint.size, leaf.hex(), path, root, False, str(exc))
    return ProofCheck(index, checkpoint.size, leaf.hex(), path, root, True, "")
