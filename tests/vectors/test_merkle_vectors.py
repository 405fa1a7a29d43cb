"""Merkle proof conformance vectors from transparency-dev/merkle (../shared/vectors/merkle)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from domicile.errors import ProofError
from domicile.ledger.merkle import verify_consistency, verify_inclusion

VECTORS = Path(__file__).resolve().parents[2].parent / "shared" / "vectors" / "merkle"


def _vector_files() -> list[Path]:
    if not VECTORS.is_dir():
        return []
    return sorted(VECTORS.rglob("*.json"))


def _b64(value: str) -> bytes:
    # Vectors deliberately carry non-hash values such as "ZG9uJ3QgY2FyZSAx"
    # ("don't care 1"); decode leniently, as the Go test harness does.
    return base64.b64decode(value)


def _check(kind: str, vector: dict[str, Any]) -> None:
    proof = [_b64(p) for p in vector["proof"] or []]
    if kind == "inclusion":
        verify_inclusion(
            _b64(vector["leafHash"]),
            vector["leafIdx"],
            vector["treeSize"],
            proof,
            _b64(vector["root"]),
        )
    else:
        verify_consistency(
            vector["size1"],
            vector["size2"],
            proof,
            _b64(vector["root1"]),
            _b64(vector["root2"]),
        )


def test_vectors_are_present(merkle_vectors: Path) -> None:
    assert merkle_vectors == VECTORS
    kinds = {path.relative_to(VECTORS).parts[0] for path in _vector_files()}
    assert kinds == {"inclusion", "consistency"}


@pytest.mark.parametrize(
    "path",
    _vector_files() or [None],
    ids=lambda p: str(p.relative_to(VECTORS)) if isinstance(p, Path) else "missing",
)
def test_vector(path: Path | None, merkle_vectors: Path) -> None:
    assert path is not None
    vector = json.loads(path.read_text(encoding="utf-8"))
    kind = path.relative_to(VECTORS).parts[0]
    assert kind in {"inclusion", "consistency"}, f"unknown vector kind {kind}"
    if vector["wantErr"]:
        with pytest.raises(ProofError):
            _check(kind, vector)
    else:
        _check(kind, vector)
