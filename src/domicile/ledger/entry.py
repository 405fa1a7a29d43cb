"""Ledger entries: a versioned, canonical encoding of what happened to a region's data.

An entry is UTF-8 JSON with sorted keys, no insignificant whitespace and ASCII-only
escapes, so the same event always encodes to the same bytes (and so the same leaf hash).
Values are strings, integers, booleans, null, lists and objects; floats are refused
because their text form is not canonical. Every entry carries::

    {"v": 1, "kind": <one of KINDS>, "region": <region>, "time": <RFC 3339 UTC>, …}

Entries never hold plaintext personal data: a subject appears only as `subject_ref`, a
keyed reference (HMAC under per-subject material kept by the region's custodian) that
becomes unlinkable once that material is shredded. See docs/ledger.md for every kind.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from domicile.errors import LedgerError

ENTRY_VERSION = 1

KINDS = frozenset(
    {
        "decision",  # an access decision (allow or deny) with its replayable attributes
        "transfer",  # data that left the region, under an agreement
        "grant-step",  # a just-in-time grant requested, approved, denied or revoked
        "policy-version",  # a policy set activated (with its hash)
        "catalog-version",  # a data catalog version in force (with its digest)
        "key-unwrap",  # the custodian unwrapped a data key against a logged decision
        "migration-batch",  # legacy records moved in (counts and a Merkle root of digests)
        "erasure",  # a subject was crypto-shredded
        "relocation",  # a subject left for, or arrived from, another region
        "gateway-build",  # the digest of the gateway build that started
        "alert",  # something the monitor and the officers must look at now (break glass)
    }
)

Json = None | bool | int | str | list["Json"] | dict[str, "Json"]


def _is_json(value: Any) -> bool:
    # Hot path (every decision): no path strings are built unless something is wrong.
    if value is None or isinstance(value, bool | int | str):
        return True
    if type(value) is list:
        return all(_is_json(item) for item in value)
    if type(value) is dict:
        return all(type(k) is str and _is_json(v) for k, v in value.items())
    return False


def _check(value: Any, where: str) -> None:
    if _is_json(value):
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check(item, f"{where}[{i}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise LedgerError(f"entry key at `{where}` is not a string")
            _check(item, f"{where}.{key}")
    raise LedgerError(f"entry value at `{where}` is a {type(value).__name__}, not json")


def encode_entry(kind: str, region: str, time: str, attributes: Mapping[str, Json]) -> bytes:
    """Encode one ledger entry canonically."""
    if kind not in KINDS:
        raise LedgerError(f"entry kind `{kind}` is not known")
    reserved = {"v", "kind", "region", "time"} & set(attributes)
    if reserved:
        raise LedgerError(f"entry attributes may not set `{sorted(reserved)[0]}`")
    body: dict[str, Json] = {"v": ENTRY_VERSION, "kind": kind, "region": region, "time": time}
    body.update(attributes)
    _check(body, "entry")
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _refuse(text: str) -> None:
    raise LedgerError(f"entry holds `{text[:20]}`, which is not canonical json")


def decode_entry(data: bytes) -> dict[str, Json]:
    """Decode and check an entry; it must be in canonical form.

    Floats and NaN/Infinity are refused while parsing; canonical form is then checked
    by encoding the result again (monitors decode every entry: this stays cheap).
    """
    try:
        body = json.loads(data.decode("ascii"), parse_float=_refuse, parse_constant=_refuse)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LedgerError("entry is not ascii json") from exc
    if not isinstance(body, dict):
        raise LedgerError("entry is not a json object")
    if body.get("v") != ENTRY_VERSION:
        raise LedgerError(f"entry version `{body.get('v')}` is not supported")
    for key in ("kind", "region", "time"):
        if not isinstance(body.get(key), str):
            raise LedgerError(f"entry has no `{key}`")
    if body["kind"] not in KINDS:
        raise LedgerError(f"entry kind `{body['kind']}` is not known")
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    if canonical.encode() != data:
        raise LedgerError("entry is not in canonical form")
    return body
