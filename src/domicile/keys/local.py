"""The embedded custodian: a key-encryption key file and a keyring database per region.

Layout of the custodian directory (mode 0700)::

    kek-1.key        32 random bytes (mode 0600): the key-encryption key
    keyring.db       subject id -> data key wrapped under the KEK (AES-256-GCM)

The wrap binds the region and subject id as associated data, so a wrapped key moved to
another subject or region does not unwrap.

Ledger references: `subject_ref` is HMAC-SHA256 under a region key derived from the
KEK, over a random per-subject salt and the subject id. The salt is wiped with the
data key, so after erasure nobody — the operator included — can link old ledger
entries to the subject id any more.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from domicile.errors import AccessDenied, ConfigError, Conflict, IntegrityError, KeyDestroyed
from domicile.keyfiles import load_or_create
from domicile.keys.custodian import Authorization, UnwrapRecord
from domicile.keys.envelope import NONCE_BYTES, new_data_key, open_sealed_with, seal
from domicile.pets.keyed import KeyedMac
from domicile.storage.database import SqliteDatabase, insert_values
from domicile.storage.group_commit import GroupCommit
from domicile.storage.migrations import migrate
from domicile.storage.url import SqliteUrl

_KEK_ID = 1
_REF_CACHE = 100_000
_REF_HEX = 32  # hex digits of a subject ref (128 bits)
_DECISION_HEX = 32  # characters of a decision id in a run of unwraps (keyring 0005)
_RANGE_MIN = 64  # ascending ids from this many on are read as a range of the keyring
_RANGE_SLACK = 2  # … of at most this many rows per id asked for


@dataclass
class _Group:
    """Unwrap records stored as one row: they share an action and a moment, and either
    one decision (`decisions` holds it once) or a run of decisions at consecutive ledger
    entries, one per record."""

    decision_id: str  # the first decision
    ledger_index: int  # the first decision's entry
    action: str
    at: str
    decisions: list[str]
    refs: list[str]

    def takes(self, ref: str, decision_id: str, ledger_index: int, action: str, at: str) -> bool:
        """Add the record if it belongs to this group; whether it did."""
        if action != self.action or at != self.at:
            return False
        shared = len(self.decisions) == 1
        if shared and decision_id == self.decision_id and ledger_index == self.ledger_index:
            self.refs.append(ref)
            return True
        # A run: this record's decision is the entry after the last one's.
        runs = not shared or len(self.refs) == 1
        if (
            runs
            and ledger_index == self.ledger_index + len(self.refs)
            and (len(decision_id) == _DECISION_HEX and len(self.decision_id) == _DECISION_HEX)
        ):
            self.decisions.append(decision_id)
            self.refs.append(ref)
            return True
        return False


class LocalCustodian:
    """Keeps a region's KEK in a local file and its wrapped data keys in SQLite."""

    def __init__(self, region: str, directory: Path) -> None:
        self.region = region
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._kek = _load_or_create_kek(directory / f"kek-{_KEK_ID}.key")
        # Made once: the key schedule cost more than the unwrap of a single read.
        self._kek_cipher = AESGCM(self._kek)
        self._ref_key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"domicile-subject-ref/v1"
        ).derive(self._kek)
        self._ref_mac = KeyedMac(self._ref_key)
        self._refs: OrderedDict[str, str] = OrderedDict()
        self._refs_lock = threading.Lock()
        self._db = SqliteDatabase(SqliteUrl(directory / "keyring.db"))
        migrate(self._db, "keyring", "domicile.keys")
        self._unwrap_log: GroupCommit[tuple[str, str, int, str, str]] = GroupCommit(
            self._write_unwraps
        )

    def _aad(self, subject_id: str) -> bytes:
        return b"domicile-dek/v1\x00" + self.region.encode() + b"\x00" + subject_id.encode()

    def create_data_keys(
        self, subject_ids: Sequence[str], authorization: Authorization
    ) -> dict[str, bytes]:
        """Make, wrap and keep new data keys; a destroyed key may be replaced, a live one not."""
        del authorization
        keys = {subject_id: new_data_key() for subject_id in subject_ids}
        rows = [
            (subject_id, _KEK_ID, seal(self._kek, key, self._aad(subject_id)), os.urandom(16))
            for subject_id, key in keys.items()
        ]
        with self._db.transaction() as tx:
            for start in range(0, len(subject_ids), 400):
                chunk = list(subject_ids[start : start + 400])
                live = tx.execute(
                    "SELECT subject_id FROM data_keys WHERE destroyed = 0 AND subject_id IN"
                    f" ({', '.join('?' for _ in chunk)})",
                    tuple(chunk),
                ).fetchone()
                if live is not None:
                    raise Conflict(f"subject `{live[0]}` already has a data key in `{self.region}`")
            tx.executemany(
                "INSERT INTO data_keys (subject_id, kek_id, wrapped, ref_salt, destroyed)"
                " VALUES (?, ?, ?, ?, 0) ON CONFLICT (subject_id) DO UPDATE SET"
                " kek_id = excluded.kek_id, wrapped = excluded.wrapped,"
                " ref_salt = excluded.ref_salt, destroyed = 0",
                rows,
            )
        return keys

    def import_data_keys(self, keys: Mapping[str, bytes], authorization: Authorization) -> None:
        """Wrap and keep data keys made elsewhere for new subjects (a bulk load's workers,
        which never see the KEK); Conflict if any of them already has a key."""
        del authorization
        kek = AESGCM(self._kek)
        count = len(keys)
        nonces, salts = os.urandom(NONCE_BYTES * count), os.urandom(16 * count)
        rows = []
        for i, (subject_id, key) in enumerate(keys.items()):
            nonce = nonces[NONCE_BYTES * i : NONCE_BYTES * (i + 1)]
            # The format of envelope.seal: version byte, nonce, ciphertext and tag.
            wrapped = b"\x01" + nonce + kek.encrypt(nonce, key, self._aad(subject_id))
            rows.append((subject_id, _KEK_ID, wrapped, salts[16 * i : 16 * (i + 1)]))
        with self._db.transaction() as tx:
            insert_values(
                tx,
                "INSERT INTO data_keys (subject_id, kek_id, wrapped, ref_salt, destroyed) VALUES",
                "(?, ?, ?, ?, 0)",
                rows,
            )

    def unwrap_data_key(self, subject_id: str, authorization: Authorization) -> bytes:
        """Return a subject's data key against a recorded decision, recording the unwrap.

        AccessDenied without a ledger reference; KeyDestroyed once shredded. The key is
        returned only after the unwrap record is durable.
        """
        key = self.unwrap_data_keys([(subject_id, authorization)])[subject_id]
        if isinstance(key, KeyDestroyed):
            raise key
        return key

    def unwrap_data_keys(
        self, requests: Sequence[tuple[str, Authorization]]
    ) -> dict[str, bytes | KeyDestroyed]:
        """Unwrap several keys; every unwrap is recorded (durably, in one batch) first."""
        out, records = self._unwrap(requests)
        if records:
            self._unwrap_log.submit(records)
        return out

    async def unwrap_data_keys_async(
        self, requests: Sequence[tuple[str, Authorization]]
    ) -> dict[str, bytes | KeyDestroyed]:
        """`unwrap_data_keys` on an event loop: the unwrap record is written off the loop."""
        out, records = self._unwrap(requests)
        if records:
            await self._unwrap_log.submit_async(records)
        return out

    def _unwrap(
        self, requests: Sequence[tuple[str, Authorization]]
    ) -> tuple[dict[str, bytes | KeyDestroyed], list[tuple[str, str, int, str, str]]]:
        """The keys and the unwrap records to make durable before any key is handed out."""
        for _, authorization in requests:
            if authorization.ledger_index is None or authorization.ledger_index < 0:
                raise AccessDenied("the custodian unwraps only against a decision in the ledger")
        rows = self._key_rows(list(dict.fromkeys(sid for sid, _ in requests)))
        out: dict[str, bytes | KeyDestroyed] = {}
        kek = self._kek_cipher
        records: list[tuple[str, str, int, str, str]] = []
        now = datetime.now(UTC).isoformat(timespec="microseconds")
        refs = self._refs
        for subject_id, authorization in requests:
            row = rows.get(subject_id)
            if row is None or row[2]:
                out[subject_id] = KeyDestroyed(f"data key of subject `{subject_id}` was destroyed")
                continue
            try:
                out[subject_id] = open_sealed_with(kek, bytes(row[1]), self._aad(subject_id))
            except IntegrityError as exc:
                raise IntegrityError(
                    f"wrapped data key of subject `{subject_id}` does not verify in `{self.region}`"
                ) from exc
            # The salt came with the key: no query per subject for its reference, and
            # none computed when the decision's record just put it in the cache (a
            # destroyed key's ref leaves the cache with it; ids are never reused).
            ref = refs.get(subject_id) or self._ref(bytes(row[3]), subject_id)
            records.append(
                (ref, authorization.decision_id,
                 authorization.ledger_index or 0, authorization.action, now)
            )  # fmt: skip
        return out, records

    def _key_rows(self, ids: list[str]) -> dict[str, tuple[Any, ...]]:
        """The keyring rows of `ids` (subject id, wrapped key, destroyed, ref salt).

        Ids in ascending order (an export's page) are read as one range of the table,
        which is keyed by subject id: neighbouring rows, not a probe per id. The range
        is read up to `_RANGE_SLACK` times their number; a range that holds more (many
        other subjects in between) has the rest looked up by id.
        """
        rows: dict[str, tuple[Any, ...]] = {}
        rest = ids
        if len(ids) >= _RANGE_MIN and all(a < b for a, b in itertools.pairwise(ids)):
            wanted = set(ids)
            limit = _RANGE_SLACK * len(ids)
            scanned = self._db.query(
                "SELECT subject_id, wrapped, destroyed, ref_salt FROM data_keys"
                " WHERE subject_id >= ? AND subject_id <= ? ORDER BY subject_id LIMIT ?",
                (ids[0], ids[-1], limit),
            )
            rows = {str(row[0]): row for row in scanned if row[0] in wanted}
            rest = [] if len(scanned) < limit else [s for s in ids if s > scanned[-1][0]]
        for start in range(0, len(rest), 400):
            chunk = rest[start : start + 400]
            marks = ", ".join("?" for _ in chunk)
            for row in self._db.query(
                "SELECT subject_id, wrapped, destroyed, ref_salt FROM data_keys"
                f" WHERE subject_id IN ({marks})",
                tuple(chunk),
            ):
                rows[str(row[0])] = row
        return rows

    def _write_unwraps(self, records: list[tuple[str, str, int, str, str]]) -> int:
        """Store records (ref, decision id, ledger index, action, time) in groups: a run
        of records that differ only in their ref is one row (keyring migration 0004), and
        so is a run whose decisions follow one another in the ledger (0005)."""
        groups: list[_Group] = []
        for ref, decision_id, ledger_index, action, at in records:
            group = groups[-1] if groups else None
            if group is None or not group.takes(ref, decision_id, ledger_index, action, at):
                groups.append(_Group(decision_id, ledger_index, action, at, [decision_id], [ref]))
        with self._db.transaction() as tx:
            last = int(
                tx.execute("SELECT COALESCE(MAX(last_id), 0) FROM unwrap_groups").fetchone()[0]
            )
            rows = []
            for g in groups:
                last += len(g.refs)
                run = "".join(g.decisions) if len(g.decisions) > 1 else None
                rows.append((last, len(g.refs), g.decision_id, g.ledger_index, g.action, g.at,
                             "".join(g.refs), run))  # fmt: skip
            insert_values(
                tx,
                "INSERT INTO unwrap_groups (last_id, count, decision_id, ledger_index, action,"
                " unwrapped_at, subject_refs, decision_ids) VALUES",
                "(?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        return 0

    def unwraps(self, after: int = 0, limit: int = 1000) -> list[UnwrapRecord]:
        """The custodian's record of unwraps with id > `after`, oldest first."""
        with self._db.transaction(write=False) as tx:
            rows = tx.execute(
                "SELECT last_id, count, decision_id, ledger_index, action, unwrapped_at,"
                " subject_refs, decision_ids FROM unwrap_groups WHERE last_id > ?"
                " ORDER BY last_id LIMIT ?",
                (after, limit),  # a group holds one record or more: `limit` groups suffice
            ).fetchall()
        out: list[UnwrapRecord] = []
        for last, count, decision_id, ledger_index, action, at, refs, run in rows:
            if len(refs) != _REF_HEX * count or (
                run is not None and len(run) != _DECISION_HEX * count
            ):
                raise IntegrityError(f"an unwrap record of `{self.region}` is malformed")
            first = last - count + 1
            for record_id in range(max(first, after + 1), last + 1):
                k = record_id - first
                ref = refs[_REF_HEX * k : _REF_HEX * (k + 1)]
                if run is None:
                    decision, index = decision_id, ledger_index
                else:
                    decision, index = (
                        run[_DECISION_HEX * k : _DECISION_HEX * (k + 1)],
                        ledger_index + k,
                    )
                out.append(UnwrapRecord(record_id, ref, decision, index, action, at))
                if len(out) == limit:
                    return out
        return out

    def destroy_data_key(self, subject_id: str, authorization: Authorization) -> None:
        """Overwrite and mark a subject's data key destroyed (secure_delete wipes the page)."""
        del authorization
        with self._db.transaction() as tx:
            tx.execute(
                "UPDATE data_keys SET wrapped = zeroblob(0), ref_salt = zeroblob(0), destroyed = 1"
                " WHERE subject_id = ?",
                (subject_id,),
            )
        with self._refs_lock:
            self._refs.pop(subject_id, None)
        # The old page may still sit in the write-ahead log: fold it in and truncate it.
        self._db.checkpoint()

    def destroy_data_keys(self, subject_ids: Sequence[str], authorization: Authorization) -> None:
        """`destroy_data_key` for many subjects (one transaction, one WAL checkpoint)."""
        del authorization
        with self._db.transaction() as tx:
            tx.executemany(
                "UPDATE data_keys SET wrapped = zeroblob(0), ref_salt = zeroblob(0), destroyed = 1"
                " WHERE subject_id = ?",
                [(subject_id,) for subject_id in subject_ids],
            )
        with self._refs_lock:
            for subject_id in subject_ids:
                self._refs.pop(subject_id, None)
        self._db.checkpoint()

    def subject_ref(self, subject_id: str) -> str:
        """HMAC of the subject's salt and id under the region's reference key (hex, 128 bits)."""
        return self.subject_refs([subject_id])[subject_id]

    def subject_refs(self, subject_ids: Sequence[str]) -> dict[str, str]:
        """`subject_ref` for many subjects: the cached ones, then one query per 400 others."""
        out: dict[str, str] = {}
        with self._refs_lock:
            for subject_id in subject_ids:
                ref = self._refs.get(subject_id)
                if ref is not None:
                    self._refs.move_to_end(subject_id)
                    out[subject_id] = ref
        missing = [sid for sid in dict.fromkeys(subject_ids) if sid not in out]
        live: dict[str, str] = {}
        for start in range(0, len(missing), 400):
            chunk = missing[start : start + 400]
            marks = ", ".join("?" for _ in chunk)
            for sid, salt in self._db.query(
                f"SELECT subject_id, ref_salt FROM data_keys WHERE subject_id IN ({marks})"
                " AND destroyed = 0",
                tuple(chunk),
            ):
                live[str(sid)] = self._ref(bytes(salt), str(sid))
        for sid in missing:
            # Without live material the reference links to nothing kept about the subject.
            out[sid] = live.get(sid) or self._ref(b"no-subject-material", sid)
        if live:
            with self._refs_lock:
                self._refs.update(live)
                while len(self._refs) > _REF_CACHE:
                    self._refs.popitem(last=False)
        return out

    def _ref(self, salt: bytes, subject_id: str) -> str:
        return self._ref_mac.digest(salt + b"\x00" + subject_id.encode())[:16].hex()

    def close(self) -> None:
        """Close the keyring."""
        self._db.close()


def _load_or_create_kek(path: Path) -> bytes:
    # Made whole or not at all: two processes starting at once use one KEK.
    key = load_or_create(path, lambda: os.urandom(32))
    if len(key) != 32:
        raise ConfigError(f"key-encryption key `{path}` is not 32 bytes")
    return key
