"""Keyed record digests and batch Merkle roots (pure).

A digest is HMAC-SHA256 under a per-source secret over the record's place (source,
legacy key, region, subject id) and its canonical values. Without the secret nobody
can test a guessed value against a digest, so digests may be handed to the monitor;
with it, the operator recomputes them from the vault to show nothing was altered.
The batch root is the RFC 9162 Merkle root over the digests, in legacy id order.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence

from domicile.catalog.catalog import JsonValue
from domicile.ledger.merkle import leaf_hash, root_from_leaves

DIGEST_DOMAIN = b"domicile-migrate-record/v1"
"""The first part of every digested message."""


def record_digest(
    secret: bytes,
    source_id: str,
    key: str,
    region: str,
    subject_id: str,
    values: Mapping[str, JsonValue],
) -> bytes:
    """The keyed digest of one moved record."""
    canonical = json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    parts = [DIGEST_DOMAIN, source_id.encode(), key.encode(), region.encode(), subject_id.encode(),
             canonical.encode("utf-8")]  # fmt: skip
    # Length-prefixed parts: no two records encode alike.
    message = b"".join(len(p).to_bytes(4, "big") + p for p in parts)
    return hmac.new(secret, message, hashlib.sha256).digest()


def batch_root(digests: Sequence[bytes]) -> bytes:
    """RFC 9162 Merkle root over the digests of one batch (each digest is a leaf)."""
    return root_from_leaves(leaf_hash(d) for d in digests)
