"""Prepare a page of legacy rows for the writer: classify, validate, seal, digest (pure).

Everything here runs without a database or a key-encryption key, so it can run in a
separate process (see `feeder.py`): the input is the page's rows and a picklable
`PrepareSpec`, the output a `PreparedPage` of plain lists. Per row it

- classifies the row (no or unknown country, a value the catalog refuses, no values:
  quarantined with a reason naming the fault and the field, never a value),
- makes a subject id and a fresh data key (the custodian wraps it later under its KEK),
- seals each value as the gateway does (`envelope.seal` under `field_aad`, one AES-GCM
  context per data key), ready as vault rows,
- and computes the keyed record digest (`digest.record_digest`, from the encoded bytes).

Subject ids are UUIDv7-shaped (48-bit Unix milliseconds, then 74 random bits, as 32 hex
digits like every subject id): a batch's ids are drawn sorted and handed out in legacy
order, so its vault and directory rows are appended at the end of their indexes
instead of landing at random places, and its sealed rows are already in the (subject
id, field) order the read-back compares in.
"""

from __future__ import annotations

import hmac
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from domicile.catalog.catalog import FieldSpec, JsonValue
from domicile.errors import InvalidInput
from domicile.keys.envelope import DATA_KEY_BYTES, NONCE_BYTES
from domicile.migrate.classify import Quarantined
from domicile.migrate.digest import DIGEST_DOMAIN, batch_root
from domicile.migrate.fieldcheck import FieldCheck, field_check
from domicile.migrate.source import LegacyRow, legacy_key

# envelope.seal's format: a version byte, the nonce, then ciphertext and tag.
_SEALED_V1 = b"\x01"
_AAD_DOMAIN = b"domicile-field/v1"


@dataclass(frozen=True)
class PrepareSpec:
    """What preparing needs, as plain picklable values (no database, no KEK)."""

    source_id: str
    secret: bytes
    fields: tuple[str, ...]
    """The catalog field of each mapped column, in mapping order."""
    routes: Mapping[str, str]
    """Home region of each ISO 3166-1 alpha-2 code the topology places."""
    specs: Mapping[str, FieldSpec]
    max_field_bytes: int | None = None


@dataclass
class PreparedBatch:
    """The rows of one page bound for one region, ready to write."""

    region: str
    keys: list[str] = field(default_factory=list)
    """Legacy keys in legacy id order: the order of the digests in the Merkle root."""
    subject_ids: list[str] = field(default_factory=list)
    digests: list[bytes] = field(default_factory=list)
    data_keys: list[bytes] = field(default_factory=list)
    sealed: list[tuple[str, str, bytes]] = field(default_factory=list)
    """(subject id, field, sealed value), ordered by subject id then field."""
    sample: dict[str, JsonValue] = field(default_factory=dict)
    """The normalised values of the first row, to open its copy against."""
    root: bytes = b""


@dataclass
class PreparedPage:
    """One page: its size, the last legacy id read, the quarantine and the batches."""

    rows: int
    last_id: Any
    quarantined: list[Quarantined]
    batches: list[PreparedBatch]


def _length_prefixed(data: bytes, width: int) -> bytes:
    return len(data).to_bytes(width, "big") + data


def new_subject_ids(count: int, now_ms: int | None = None) -> list[str]:
    """`count` distinct UUIDv7 subject ids (version 7, RFC 9562 variant), sorted."""
    ms = (time.time_ns() // 1_000_000 if now_ms is None else now_ms) & (2**48 - 1)
    head = (ms << 80) | (0x7 << 76)
    randomness = os.urandom(10 * count)
    ids = set()
    for i in range(count):
        r = int.from_bytes(randomness[10 * i : 10 * i + 10], "big")
        # 12 random bits after the version, the variant bits 10, 62 more random bits.
        value = head | ((r >> 68) << 64) | (0b10 << 62) | (r & (2**62 - 1))
        ids.add(f"{value:032x}")
    out = sorted(ids)
    return out if len(out) == count else sorted({*out, *new_subject_ids(count - len(out))})


class Preparer:
    """Prepares pages under one spec (build it once per process)."""

    def __init__(self, spec: PrepareSpec) -> None:
        self.spec = spec
        self.checks: list[tuple[str, FieldCheck]] = [
            (name, field_check(spec.specs[name], spec.max_field_bytes)) for name in spec.fields
        ]
        # Canonical JSON of a record sorts its keys; field names are plain ASCII.
        self.order = sorted(spec.fields)
        self.json_keys = {name: b'"' + name.encode() + b'":' for name in spec.fields}
        self.aad_head = _length_prefixed(_AAD_DOMAIN, 2)
        self.digest_head = _length_prefixed(DIGEST_DOMAIN, 4) + _length_prefixed(
            spec.source_id.encode(), 4
        )

    def _region(self, country: object) -> str | None:
        # topology.home_region: ASCII, stripped, uppercased, then a placed ISO code.
        if isinstance(country, str) and country.isascii():
            return self.spec.routes.get(country.strip().upper())
        return None

    def classify(self, row: LegacyRow) -> tuple[str, str, dict[str, JsonValue], dict[str, bytes]]:
        """(key, region, values, encoded values) of a valid row; Quarantined is raised
        as the reason otherwise (see `classify.Classifier`, whose rules these are)."""
        key = legacy_key(row[0])
        country = row[1]
        if country is None or (isinstance(country, str) and not country.strip()):
            raise _Refused(key, "missing-country")
        region = self._region(country)
        if region is None:
            raise _Refused(key, "unknown-country")
        values: dict[str, JsonValue] = {}
        encoded: dict[str, bytes] = {}
        for (name, check), raw in zip(self.checks, row[2:], strict=True):
            if raw is None:
                continue
            try:
                values[name], encoded[name] = check(raw)
            except InvalidInput as exc:
                raise _Refused(key, f"{exc.code}:{name}") from None
        if not values:
            raise _Refused(key, "no-values")
        return key, region, values, encoded

    def prepare(self, rows: Sequence[LegacyRow]) -> PreparedPage:
        """Classify, seal and digest one page of rows."""
        quarantined: list[Quarantined] = []
        by_region: dict[str, list[tuple[str, dict[str, JsonValue], dict[str, bytes]]]] = {}
        for row in rows:
            try:
                key, region, values, encoded = self.classify(row)
            except _Refused as refused:
                quarantined.append(Quarantined(refused.key, refused.reason))
                continue
            by_region.setdefault(region, []).append((key, values, encoded))
        batches = [self._seal(region, by_region[region]) for region in sorted(by_region)]
        return PreparedPage(len(rows), rows[-1][0] if rows else None, quarantined, batches)

    def _seal(
        self, region: str, items: list[tuple[str, dict[str, JsonValue], dict[str, bytes]]]
    ) -> PreparedBatch:
        batch = PreparedBatch(region, sample=items[0][1])
        count = len(items)
        ids = new_subject_ids(count)
        data_keys = os.urandom(DATA_KEY_BYTES * count)
        nonces = os.urandom(NONCE_BYTES * count * len(self.order))
        region_bytes = region.encode()
        aad_tails = {
            name: _length_prefixed(region_bytes, 2) + _length_prefixed(name.encode(), 2)
            for name in self.order
        }
        digest_region = _length_prefixed(region_bytes, 4)
        secret, json_keys, order = self.spec.secret, self.json_keys, self.order
        sealed, n = batch.sealed, 0
        for i, (key, _, encoded) in enumerate(items):
            subject_id = ids[i]
            sid = subject_id.encode()
            data_key = data_keys[DATA_KEY_BYTES * i : DATA_KEY_BYTES * (i + 1)]
            aead = AESGCM(data_key)
            aad_subject = self.aad_head + _length_prefixed(sid, 2)
            parts = []
            for name in order:
                value = encoded.get(name)
                if value is None:
                    continue
                nonce = nonces[NONCE_BYTES * n : NONCE_BYTES * (n + 1)]
                n += 1
                blob = aead.encrypt(nonce, value, aad_subject + aad_tails[name])
                sealed.append((subject_id, name, _SEALED_V1 + nonce + blob))
                parts.append(json_keys[name] + value)
            canonical = b"{" + b",".join(parts) + b"}"
            message = b"".join((self.digest_head, _length_prefixed(key.encode(), 4),
                                digest_region, _length_prefixed(sid, 4),
                                _length_prefixed(canonical, 4)))  # fmt: skip
            batch.keys.append(key)
            batch.subject_ids.append(subject_id)
            batch.data_keys.append(data_key)
            batch.digests.append(hmac.digest(secret, message, "sha256"))
        batch.root = batch_root(batch.digests)
        return batch


class _Refused(Exception):
    """A row goes to quarantine (internal control flow of `Preparer.classify`)."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(reason)
        self.key = key
        self.reason = reason
