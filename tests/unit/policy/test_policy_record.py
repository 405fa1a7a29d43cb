"""A policy version as its ledger entry holds it: plain when it fits, compressed when the
set is large, refused (before activation) when even that does not fit; and read back
by the monitor in either form, never inflating without bound."""

from __future__ import annotations

import base64
import zlib
from typing import Any

import pytest
from policy_support import padded_policies

from domicile.errors import ConfigError
from domicile.ledger.entry import canonical_json
from domicile.ledger.tiles import MAX_ENTRY_SIZE
from domicile.monitor.replay import engine_from_record
from domicile.policy.engine import PolicyEngine
from domicile.policy.record import MAX_TEXT_BYTES, ledger_record, texts_of


def test_a_record_that_fits_is_kept_as_it_is() -> None:
    record = PolicyEngine.load().snapshot.version_record()
    assert ledger_record(record) == record
    assert texts_of(record) == (record["policies"], record["schema"])


def test_a_large_set_is_recorded_compressed_and_rebuilds_to_its_hash() -> None:
    engine = PolicyEngine.load(padded_policies(600))
    record = engine.snapshot.version_record()
    assert len(canonical_json(record)) > MAX_ENTRY_SIZE  # would not fit as text
    entry = ledger_record(record)
    assert "policies" not in entry
    assert "schema" not in entry
    assert len(canonical_json(entry)) < MAX_ENTRY_SIZE
    assert texts_of(entry) == (record["policies"], record["schema"])
    rebuilt = engine_from_record(entry)
    assert rebuilt.policy_hash == engine.policy_hash
    assert "policy_ids" not in entry  # they follow from the policies:
    assert sorted(rebuilt.snapshot.ids.values()) == record["policy_ids"]


def test_a_set_too_large_even_compressed_is_refused_with_its_size() -> None:
    record = PolicyEngine.load(padded_policies(4000)).snapshot.version_record()
    with pytest.raises(ConfigError, match=r"too large to record in the ledger: .* at most"):
        ledger_record(record)


def _packed(record: dict[str, Any], policies: bytes) -> dict[str, Any]:
    out = {k: v for k, v in record.items() if k not in {"policies", "schema"}}
    out["policies_zlib"] = base64.b64encode(policies).decode()
    out["schema_zlib"] = base64.b64encode(zlib.compress(record["schema"].encode())).decode()
    return out


def test_a_recorded_text_that_does_not_decode_or_inflates_too_far_is_refused() -> None:
    record = PolicyEngine.load().snapshot.version_record()
    bomb = zlib.compress(b" " * (MAX_TEXT_BYTES + 1), 9)
    truncated = zlib.compress(record["policies"].encode())[:-8]
    for bad, why in ((bomb, "inflates past"), (truncated, "truncated"), (b"not zlib", "decode")):
        with pytest.raises(ConfigError, match=why):
            texts_of(_packed(record, bad))
    with pytest.raises(ConfigError, match="has no schema"):
        texts_of({"policies": "x"})
