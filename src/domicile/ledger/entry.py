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

import orjson

from domicile.errors import LedgerError
from domicile.jsonvalues import is_json

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


def _check(value: Any, where: str) -> None:
    if is_json(value):
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
    return canonical_json(body)


def canonical_json(body: Json | Mapping[str, Json]) -> bytes:
    """The canonical bytes of a JSON value (checked to hold only JSON types).

    The canonical form is Python's `json.dumps(sort_keys=True, separators=(",", ":"),
    ensure_ascii=True)`. orjson writes the same bytes, several times faster, whenever
    its output is printable ASCII (it writes U+007F and non-ASCII characters raw, where
    the canonical form escapes them) and every integer fits 64 bits; otherwise the
    slow encoder writes it. A property test holds the two to the same bytes.
    """
    try:
        fast = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        fast = b""
    if fast and _printable_ascii(fast):
        return fast
    return _slow_canonical(body)


def _slow_canonical(body: Any) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _printable_ascii(data: bytes) -> bool:
    # Valid JSON text holds no raw control characters, so ASCII without DEL is printable.
    return data.isascii() and b"\x7f" not in data


def _refuse(text: str) -> None:
    raise LedgerError(f"entry holds `{text[:20]}`, which is not canonical json")


def decode_entry(data: bytes) -> dict[str, Json]:
    """Decode and check an entry; it must be in canonical form.

    Monitors decode every entry, so the common case is fast: orjson parses it, and it
    is canonical if it holds only JSON types (no floats) and orjson writes it back to
    the same printable-ASCII bytes. Anything else takes the strict path: floats and
    NaN/Infinity are refused while parsing, then the result is encoded again.
    """
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError:
        body = None
    if (
        type(body) is dict
        and _printable_ascii(data)
        and is_json(body)
        and orjson.dumps(body, option=orjson.OPT_SORT_KEYS) == data
    ):
        return _checked(body)
    try:
        body = json.loads(data.decode("ascii"), parse_float=_refuse, parse_constant=_refuse)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LedgerError("entry is not ascii json") from exc
    if not isinstance(body, dict):
        raise LedgerError("entry is not a json object")
    _checked(body)
    if _slow_canonical(body) != data:
        raise LedgerError("entry is not in canonical form")
    return body


def _checked(body: dict[str, Json]) -> dict[str, Json]:
    if body.get("v") != ENTRY_VERSION:
        raise LedgerError(f"entry version `{body.get('v')}` is not supported")
    for key in ("kind", "region", "time"):
        if not isinstance(body.get(key), str):
            raise LedgerError(f"entry has no `{key}`")
    if body["kind"] not in KINDS:
        raise LedgerError(f"entry kind `{body['kind']}` is not known")
    return body
