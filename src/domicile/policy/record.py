"""A policy version as a `policy-version` ledger entry holds it, and read back from one.

The entry carries the full policies, schema and configuration, so the monitor can
replay every decision from the log alone. A log entry holds at most 64 KiB (C2SP
tlog-tiles frame entries with a 16-bit length), which the texts of a large policy set
outgrow; then both texts are stored zlib-compressed and base64-encoded
(`policies_zlib`, `schema_zlib`, in place of `policies` and `schema`; `policy_ids`,
which follow from the policies, is left out), which leaves room for about 400 KB of
Cedar. A set too large even so is refused with a ConfigError before it is activated.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from collections.abc import Mapping
from typing import Any

from domicile.errors import ConfigError
from domicile.ledger.entry import canonical_json
from domicile.ledger.tiles import MAX_ENTRY_SIZE

ENTRY_ROOM = MAX_ENTRY_SIZE - 1024
"""Bytes the record may take in an entry (the rest: kind, region, time, framing)."""
MAX_TEXT_BYTES = 4 * 1024 * 1024
"""The most a compressed text may inflate to when read back (a log is not trusted)."""


def ledger_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """`PolicySnapshot.version_record()` as the entry holds it: as it is if it fits,
    else with its two texts compressed; ConfigError if it does not fit even so."""
    plain = dict(record)
    size = len(canonical_json(plain))
    if size <= ENTRY_ROOM:
        return plain
    # The ids follow from the policies (one per policy): left out, they leave room.
    packed = {k: v for k, v in record.items() if k not in {"policies", "schema", "policy_ids"}}
    for name in ("policies", "schema"):
        data = zlib.compress(str(record[name]).encode(), 9)
        packed[f"{name}_zlib"] = base64.b64encode(data).decode("ascii")
    packed_size = len(canonical_json(packed))
    if packed_size > ENTRY_ROOM:
        raise ConfigError(
            f"the policy set is too large to record in the ledger: its policy-version entry"
            f" takes {packed_size} bytes compressed ({size} as text), and a log entry holds"
            f" at most {ENTRY_ROOM}"
        )
    return packed


def texts_of(record: Mapping[str, Any]) -> tuple[str, str]:
    """The policies and schema texts of a recorded version, in either form; ConfigError
    if they are missing or do not decode."""
    return _text(record, "policies"), _text(record, "schema")


def _text(record: Mapping[str, Any], name: str) -> str:
    if name in record:
        return str(record[name])
    packed = record.get(f"{name}_zlib")
    if not isinstance(packed, str):
        raise ConfigError(f"policy version record has no {name}")
    try:
        inflate = zlib.decompressobj()
        text = inflate.decompress(base64.b64decode(packed, validate=True), MAX_TEXT_BYTES)
        if inflate.unconsumed_tail:
            raise ConfigError(f"policy version record's {name} inflates past {MAX_TEXT_BYTES}")
        if not inflate.eof:
            raise ConfigError(f"policy version record's {name} is truncated")
        return text.decode("utf-8")
    except (binascii.Error, zlib.error, UnicodeDecodeError) as exc:
        raise ConfigError(f"policy version record's {name} does not decode") from exc
