"""The proof page's pure check: it verifies what `domicile verify` verifies, and no more."""

from __future__ import annotations

from domicile.console.proofs import check_inclusion
from domicile.ledger.checkpoint import Checkpoint, sign_checkpoint
from domicile.ledger.merkle import inclusion_proof, leaf_hash, node_reader_from_leaves, root_hash
from domicile.ledger.note import Ed25519Signer, generate_signer_key

ENTRIES = [f"entry {i}".encode() for i in range(13)]


def _log(name: str = "example.org/log") -> tuple[Ed25519Signer, str, list[bytes]]:
    signer_key, _ = generate_signer_key(name)
    signer = Ed25519Signer.from_key(signer_key)
    leaves = [leaf_hash(e) for e in ENTRIES]
    reader = node_reader_from_leaves(leaves)
    root = root_hash(len(leaves), reader)
    note = sign_checkpoint(Checkpoint(name, len(leaves), root), [signer])
    return signer, note, leaves


def test_a_true_proof_verifies_and_shows_its_hashes() -> None:
    signer, note, leaves = _log()
    proof = inclusion_proof(5, len(leaves), node_reader_from_leaves(leaves))
    check = check_inclusion(ENTRIES[5], 5, proof, note, signer.verifier())
    assert check.verified, check.problem
    assert check.leaf_hash == leaves[5].hex()
    assert check.path == tuple(h.hex() for h in proof)
    assert check.size == len(ENTRIES)


def test_another_entry_a_bad_path_or_another_key_do_not_verify() -> None:
    signer, note, leaves = _log()
    proof = inclusion_proof(5, len(leaves), node_reader_from_leaves(leaves))
    assert not check_inclusion(ENTRIES[6], 5, proof, note, signer.verifier()).verified
    assert not check_inclusion(ENTRIES[5], 5, proof[:-1], note, signer.verifier()).verified
    other, _, _ = _log()
    refused = check_inclusion(ENTRIES[5], 5, proof, note, other.verifier())
    assert not refused.verified
    assert refused.problem.startswith("checkpoint:")
