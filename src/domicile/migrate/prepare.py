"""Prepare a page of legacy rows for the writer: classify, validate, seal, digest (pure).

Everything here runs without a database or a key-encryption key, so it can run in a
separate process (see `feeder.py`): the input is the page's rows and a picklable
`PrepareSpec`, the output a `PreparedPage` of plain lists. Per row it

- classifies the row (no or unknown country, a value the catalog refuses, no values:
  quarantined with a reason naming the fault and the field, never a value),
- makes a subject id and a fresh data key (the custodian wraps it later under its KEK),
- seals each value as the gateway does (`envelope.seal` under `field_aad`, one AES-GCM
  context per data key) and packs a subject's sealed values as the vault stores them
  (`vault.store.pack_sealed`: one text per subject, so the writer binds it as it is),
- and computes the keyed record digest (`digest.record_digest`, from the encoded bytes).

Subject ids are UUIDv7-shaped (48-bit Unix milliseconds, then 74 random bits, as 32 hex
digits like every subject id): a batch's ids are drawn sorted and handed out in legacy
order, so its vault and directory rows are appended at the end of their indexes
instead of landing at random places.
"""

from __future__ import annotations

import hashlib
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
from domicile.vault.store import pack_sealed

# envelope.seal's format: a version byte, the nonce, then ciphertext and tag.
_SEALED_V1 = b"\x01"
_AAD_DOMAIN = b"domicile-field/v1"
# Subject ids are 32 hex digits: their length prefixes, 2 and 4 bytes wide.
_SID_BYTES2 = (32).to_bytes(2, "big")
_SID_BYTES4 = (32).to_bytes(4, "big")


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
    stored: list[str] = field(default_factory=list)
    """Each subject's sealed values as the vault stores them (`pack_sealed`)."""
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


# The variant nibble of a subject id: the bits 10, then two random bits (RFC 9562 §4.1).
_VARIANT = {f"{v:x}": f"{0x8 | (v & 0x3):x}" for v in range(16)}


def new_subject_ids(count: int, now_ms: int | None = None) -> list[str]:
    """`count` distinct UUIDv7 subject ids (version 7, RFC 9562 variant), sorted."""
    ms = (time.time_ns() // 1_000_000 if now_ms is None else now_ms) & (2**48 - 1)
    head = f"{ms:012x}7"
    # 20 random hex digits per id, 74 bits of them used: 12 after the version, 2 in the
    # variant nibble, 60 after it (hex text, sliced: no integer arithmetic per id).
    randomness = os.urandom(10 * count).hex()
    variant = _VARIANT
    ids = {
        head + r[:3] + variant[r[3]] + r[4:19]
        for r in (randomness[20 * i : 20 * i + 20] for i in range(count))
    }
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
        # HMAC (RFC 2104) with the key's inner and outer pad states hashed once, and the
        # message's constant head (domain, source) absorbed into the inner state: per
        # record only its own parts are hashed. `digest.record_digest` is the reference.
        key = spec.secret if len(spec.secret) <= 64 else hashlib.sha256(spec.secret).digest()
        key = key.ljust(64, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._inner.update(
            _length_prefixed(DIGEST_DOMAIN, 4) + _length_prefixed(spec.source_id.encode(), 4)
        )
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def _region(self, country: object) -> str | None:
        # topology.home_region: ASCII, stripped, uppercased, then a placed ISO code.
        if isinstance(country, str) and country.isascii():
            return self.spec.routes.get(country.strip().upper())
        return None

    def classify(self, row: LegacyRow) -> tuple[str, str, dict[str, bytes]]:
        """(key, region, encoded values) of a valid row; Quarantined is raised as the
        reason otherwise (see `classify.Classifier`, whose rules these are)."""
        key = legacy_key(row[0])
        country = row[1]
        if country is None or (isinstance(country, str) and not country.strip()):
            raise _Refused(key, "missing-country")
        region = self._region(country)
        if region is None:
            raise _Refused(key, "unknown-country")
        encoded: dict[str, bytes] = {}
        for (name, check), raw in zip(self.checks, row[2:], strict=True):
            if raw is None:
                continue
            try:
                encoded[name] = check(raw)[1]
            except InvalidInput as exc:
                raise _Refused(key, f"{exc.code}:{name}") from None
        if not encoded:
            raise _Refused(key, "no-values")
        return key, region, encoded

    def values(self, row: LegacyRow) -> dict[str, JsonValue]:
        """The normalised values of a row `classify` accepted."""
        return {
            name: check(raw)[0]
            for (name, check), raw in zip(self.checks, row[2:], strict=True)
            if raw is not None
        }

    def prepare(self, rows: Sequence[LegacyRow]) -> PreparedPage:
        """Classify, seal and digest one page of rows."""
        quarantined: list[Quarantined] = []
        by_region: dict[str, list[tuple[str, dict[str, bytes]]]] = {}
        firsts: dict[str, LegacyRow] = {}
        classify = self.classify
        for row in rows:
            try:
                key, region, encoded = classify(row)
            except _Refused as refused:
                quarantined.append(Quarantined(refused.key, refused.reason))
                continue
            items = by_region.get(region)
            if items is None:
                items = by_region[region] = []
                firsts[region] = row
            items.append((key, encoded))
        batches = [
            self._seal(region, by_region[region], self.values(firsts[region]))
            for region in sorted(by_region)
        ]
        return PreparedPage(len(rows), rows[-1][0] if rows else None, quarantined, batches)

    def _seal(
        self, region: str, items: list[tuple[str, dict[str, bytes]]], sample: dict[str, JsonValue]
    ) -> PreparedBatch:
        count = len(items)
        ids = new_subject_ids(count)
        data_keys = os.urandom(DATA_KEY_BYTES * count)
        nonces = os.urandom(NONCE_BYTES * count * len(self.order))
        region_bytes = region.encode()
        aad_tails = [
            (name, _length_prefixed(region_bytes, 2) + _length_prefixed(name.encode(), 2),
             self.json_keys[name])
            for name in self.order
        ]  # fmt: skip
        digest_region = _length_prefixed(region_bytes, 4)
        aad_head, inner, outer = self.aad_head + _SID_BYTES2, self._inner, self._outer
        stored: list[str] = []
        keys: list[bytes] = []
        digests: list[bytes] = []
        n = 0
        for i, (key, encoded) in enumerate(items):
            subject_id = ids[i]
            sid = subject_id.encode()
            data_key = data_keys[DATA_KEY_BYTES * i : DATA_KEY_BYTES * (i + 1)]
            encrypt = AESGCM(data_key).encrypt
            aad_subject = aad_head + sid
            parts = []
            sealed: dict[str, bytes] = {}
            for name, aad_tail, json_key in aad_tails:
                value = encoded.get(name)
                if value is None:
                    continue
                nonce = nonces[NONCE_BYTES * n : NONCE_BYTES * (n + 1)]
                n += 1
                sealed[name] = _SEALED_V1 + nonce + encrypt(nonce, value, aad_subject + aad_tail)
                parts.append(json_key + value)
            stored.append(pack_sealed(sealed))
            canonical = b"{" + b",".join(parts) + b"}"
            key_bytes = key.encode()
            mac = inner.copy()
            mac.update(b"".join((len(key_bytes).to_bytes(4, "big"), key_bytes, digest_region,
                                 _SID_BYTES4, sid, len(canonical).to_bytes(4, "big"),
                                 canonical)))  # fmt: skip
            final = outer.copy()
            final.update(mac.digest())
            keys.append(data_key)
            digests.append(final.digest())
        return PreparedBatch(
            region,
            keys=[key for key, _ in items],
            subject_ids=ids,
            digests=digests,
            data_keys=keys,
            stored=stored,
            sample=sample,
            root=batch_root(digests),
        )


class _Refused(Exception):
    """A row goes to quarantine (internal control flow of `Preparer.classify`)."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(reason)
        self.key = key
        self.reason = reason
