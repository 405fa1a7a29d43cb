"""The vault of one region: sealed (encrypted) field values per subject, on SQLite or PostgreSQL.

The vault stores only ciphertext made by `domicile.keys.envelope`; it never holds a key
and cannot decrypt. A subject is one row: its state, version and times, and its sealed
values as one JSON object of field name to hex ciphertext, so any read seeks one row per
subject. Erasure and relocation leave a tombstone row (state, version, times) with no
field values.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NamedTuple

import orjson

from domicile.errors import IntegrityError, SubjectErased, SubjectNotFound, VersionMismatch
from domicile.storage.database import Database, insert_values
from domicile.storage.migrations import migrate


class SubjectState(StrEnum):
    """Life-cycle state of a subject in one vault."""

    ACTIVE = "active"
    ERASED = "erased"
    RELOCATED = "relocated"


class SealedRecord(NamedTuple):
    """A subject's row and the sealed values of the fields asked for.

    A named tuple: as immutable as a frozen dataclass, and made for every record a
    batch read returns at a third of the cost."""

    subject_id: str
    region: str
    version: int
    catalog_version: str
    created_at: str
    updated_at: str
    fields: dict[str, bytes]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _pack(sealed: Mapping[str, bytes]) -> str:
    """A subject's sealed values as stored: a JSON object of field name to hex ciphertext."""
    return orjson.dumps({name: value.hex() for name, value in sealed.items()}).decode()


def pack_sealed(sealed: Mapping[str, bytes]) -> str:
    """A subject's sealed values as the vault stores them, for bulk loads that pack them
    ahead of `insert_packed` (in another process, say)."""
    return _pack(sealed)


def unpack_sealed(
    subject_id: str, region: str, stored: object, names: Collection[str] | None
) -> dict[str, bytes]:
    """The sealed values of `names` (all when None) from a stored row's column."""
    if stored is None:
        return {}
    try:
        values = orjson.loads(stored)  # type: ignore[arg-type]
        if names is None:
            return {str(name): bytes.fromhex(value) for name, value in values.items()}
        return {name: bytes.fromhex(values[name]) for name in names if name in values}
    except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError) as exc:
        raise IntegrityError(
            f"stored values of subject `{subject_id}` in `{region}` are malformed"
        ) from exc


_HEAD = "id, state, version, catalog_version, created_at, updated_at, sealed"
_BULK = 400
_BULK_MARKS = ", ".join("?" for _ in range(_BULK))


def _bulk_chunk(ids: Sequence[str], start: int) -> tuple[str, ...]:
    """`_BULK` ids from `start`, the last one repeated to fill a short chunk: bulk
    statements keep one text, so a connection caches one prepared statement per kind
    however many short chunks a long bulk load ends its batches with."""
    chunk = tuple(ids[start : start + _BULK])
    return chunk + (chunk[-1],) * (_BULK - len(chunk))


class Vault:
    """One region's vault over a `Database` (a SQLite file or a PostgreSQL schema)."""

    def __init__(self, region: str, db: Database) -> None:
        self.region = region
        self.db = db
        migrate(db, "vault", "domicile.vault")
        self._lock_clause = " FOR UPDATE" if db.dialect == "postgres" else ""

    def insert(self, subject_id: str, sealed: Mapping[str, bytes], catalog_version: str) -> None:
        """Store a new subject; Conflict if the id is active or erased here."""
        self.insert_many([(subject_id, sealed)], catalog_version)

    def insert_many(
        self, records: Sequence[tuple[str, Mapping[str, bytes]]], catalog_version: str
    ) -> None:
        """Store new subjects in one transaction (all or none).

        A tombstone left by an earlier relocation away from this region is replaced: the
        subject is coming back. An erased or active subject is a Conflict.
        """
        now = _now()
        ids = [subject_id for subject_id, _ in records]
        with self.db.transaction() as tx:
            for start in range(0, len(ids), 400):
                chunk = ids[start : start + 400]
                tx.execute(
                    "DELETE FROM subjects WHERE state = 'relocated' AND id IN"
                    f" ({', '.join('?' for _ in chunk)})",
                    tuple(chunk),
                )
            tx.executemany(
                "INSERT INTO subjects (id, state, version, catalog_version, created_at,"
                " updated_at, sealed) VALUES (?, 'active', 1, ?, ?, ?, ?)",
                [(sid, catalog_version, now, now, _pack(sealed)) for sid, sealed in records],
            )

    def insert_rows(
        self,
        subject_ids: Sequence[str],
        rows: Sequence[tuple[str, str, bytes]],
        catalog_version: str,
    ) -> dict[str, str]:
        """Store new subjects from ready (subject id, field, sealed) rows in one transaction;
        return each subject's stored values, as `stored_values` reads them back.

        `insert_many` for bulk loads that already hold their values in this shape: the
        same checks, all or none. Every row's subject must be among `subject_ids`.
        """
        packed: dict[str, dict[str, str]] = {sid: {} for sid in subject_ids}
        for subject_id, name, value in rows:
            if subject_id not in packed:
                raise ValueError(f"a row of subject `{subject_id}` is not among the subjects")
            packed[subject_id][name] = value.hex()
        stored = {sid: orjson.dumps(values).decode() for sid, values in packed.items()}
        self.insert_packed(list(stored), list(stored.values()), catalog_version)
        return stored

    def insert_packed(
        self, subject_ids: Sequence[str], stored: Sequence[str], catalog_version: str
    ) -> None:
        """Store new subjects whose sealed values come packed (`pack_sealed`, one text per
        subject, in `subject_ids` order) in one transaction; `insert_many`'s checks, all
        or none. `stored_values` reads back exactly these texts."""
        if len(stored) != len(subject_ids):
            raise ValueError("one packed text per subject is needed")
        now = _now()
        with self.db.transaction() as tx:
            for start in range(0, len(subject_ids), _BULK):
                tx.execute(
                    f"DELETE FROM subjects WHERE state = 'relocated' AND id IN ({_BULK_MARKS})",
                    _bulk_chunk(subject_ids, start),
                )
            insert_values(
                tx,
                "INSERT INTO subjects (id, state, version, catalog_version, created_at,"
                " updated_at, sealed) VALUES",
                "(?, 'active', 1, ?, ?, ?, ?)",
                [(sid, catalog_version, now, now, text)
                 for sid, text in zip(subject_ids, stored, strict=True)],
            )  # fmt: skip

    def stored_values(self, subject_ids: Sequence[str]) -> dict[str, str]:
        """The stored sealed values (the JSON text, unparsed) of the active subjects among
        `subject_ids`, a few hundred ids per statement: a bulk load reads back exactly
        what it wrote without decoding it."""
        ids = list(dict.fromkeys(subject_ids))
        out: dict[str, str] = {}
        for start in range(0, len(ids), _BULK):
            out.update(
                (str(row[0]), str(row[1]))
                for row in self.db.query(
                    "SELECT id, sealed FROM subjects WHERE state = 'active'"
                    f" AND id IN ({_BULK_MARKS})",
                    _bulk_chunk(ids, start),
                )
            )
        return out

    def fetch(self, subject_id: str, names: Collection[str] | None = None) -> SealedRecord:
        """Return a subject's record with the sealed values of `names` (all when None)."""
        rows = self.db.query(f"SELECT {_HEAD} FROM subjects WHERE id = ?", (subject_id,))
        return self._from_row(subject_id, rows[0] if rows else None, names)

    def fetch_many(
        self, subject_ids: Sequence[str], names: Collection[str] | None = None
    ) -> dict[str, SealedRecord | SubjectNotFound | SubjectErased]:
        """Fetch several subjects, a few hundred per statement; misses are returned, not raised."""
        rows: dict[str, tuple[Any, ...]] = {}
        for start in range(0, len(subject_ids), 400):
            chunk = list(dict.fromkeys(subject_ids[start : start + 400]))
            marks = ", ".join("?" for _ in chunk)
            for row in self.db.query(f"SELECT {_HEAD} FROM subjects WHERE id IN ({marks})", chunk):
                rows[str(row[0])] = row
        out: dict[str, SealedRecord | SubjectNotFound | SubjectErased] = {}
        for subject_id in subject_ids:
            try:
                out[subject_id] = self._from_row(subject_id, rows.get(subject_id), names)
            except (SubjectNotFound, SubjectErased) as exc:
                out[subject_id] = exc
        return out

    def active_sealed_page(self, after: str, limit: int) -> list[tuple[str, str | None]]:
        """The next `limit` active subjects with id > `after`, in id order, as their id and
        stored values (`unpack_sealed` opens them): what a dataset export walks, with no
        record objects made for it; one statement."""
        rows = self.db.query(
            "SELECT id, sealed FROM subjects WHERE state = 'active' AND id > ? ORDER BY id LIMIT ?",
            (after, limit),
        )
        return [(str(row[0]), row[1]) for row in rows]

    def active_sealed(self, subject_ids: Sequence[str]) -> list[tuple[str, str | None]]:
        """The id and stored values of those of `subject_ids` that are active here, in the
        order given (each once); erased, moved and unknown ones are left out."""
        found: dict[str, str | None] = {}
        ids = list(dict.fromkeys(subject_ids))
        for start in range(0, len(ids), 400):
            chunk = ids[start : start + 400]
            marks = ", ".join("?" for _ in chunk)
            for row in self.db.query(
                f"SELECT id, sealed FROM subjects WHERE state = 'active' AND id IN ({marks})",
                chunk,
            ):
                found[str(row[0])] = row[1]
        return [(sid, found[sid]) for sid in ids if sid in found]

    def _from_row(
        self, subject_id: str, row: tuple[Any, ...] | None, names: Collection[str] | None
    ) -> SealedRecord:
        """The record of a `_HEAD` row, with the sealed values of `names` (all when None)."""
        if row is None:
            raise SubjectNotFound(f"subject `{subject_id}` is not in region `{self.region}`")
        if row[1] != SubjectState.ACTIVE:
            raise SubjectErased(f"subject `{subject_id}` was {row[1]} in region `{self.region}`")
        return SealedRecord(
            subject_id,
            self.region,
            int(row[2]),
            str(row[3]),
            str(row[4]),
            str(row[5]),
            unpack_sealed(subject_id, self.region, row[6], names),
        )

    def update(
        self,
        subject_id: str,
        sealed: Mapping[str, bytes],
        *,
        remove: Collection[str] = (),
        expected_version: int | None = None,
    ) -> int:
        """Set and remove fields atomically; return the new version.

        With `expected_version`, the update happens only if the record is still at that
        version (VersionMismatch otherwise), so read-modify-write clients lose no update.
        """
        with self.db.transaction() as tx:
            row = tx.execute(
                f"SELECT {_HEAD} FROM subjects WHERE id = ?" + self._lock_clause, (subject_id,)
            ).fetchone()
            record = self._from_row(subject_id, row, None)
            if expected_version is not None and record.version != expected_version:
                raise VersionMismatch(
                    f"subject `{subject_id}` is at version {record.version}, not {expected_version}"
                )
            values = {**record.fields, **sealed}
            for name in remove:
                values.pop(name, None)
            new_version = record.version + 1
            tx.execute(
                "UPDATE subjects SET version = ?, updated_at = ?, sealed = ? WHERE id = ?",
                (new_version, _now(), _pack(values), subject_id),
            )
        return new_version

    def tombstone(self, subject_id: str, state: SubjectState) -> None:
        """Delete every field value and leave a tombstone in `state` (erased or relocated)."""
        if state is SubjectState.ACTIVE:
            raise ValueError("a tombstone cannot be active")
        with self.db.transaction() as tx:
            head = tx.execute(
                "SELECT state FROM subjects WHERE id = ?" + self._lock_clause, (subject_id,)
            ).fetchone()
            if head is None:
                raise SubjectNotFound(f"subject `{subject_id}` is not in region `{self.region}`")
            tx.execute(
                "UPDATE subjects SET state = ?, version = version + 1, updated_at = ?,"
                " sealed = NULL WHERE id = ?",
                (state.value, _now(), subject_id),
            )

    def discard(self, subject_id: str) -> None:
        """Remove every trace of a subject that was never authoritative here (failed copy)."""
        with self.db.transaction() as tx:
            tx.execute("DELETE FROM subjects WHERE id = ?", (subject_id,))

    def discard_many(self, subject_ids: Sequence[str]) -> None:
        """`discard` for many subjects of a failed bulk copy, in one transaction."""
        with self.db.transaction() as tx:
            for start in range(0, len(subject_ids), _BULK):
                chunk = _bulk_chunk(subject_ids, start)
                tx.execute(f"DELETE FROM subjects WHERE id IN ({_BULK_MARKS})", chunk)

    def state(self, subject_id: str) -> SubjectState | None:
        """Return a subject's state here, or None if this vault never held it."""
        with self.db.transaction(write=False) as tx:
            row = tx.execute("SELECT state FROM subjects WHERE id = ?", (subject_id,)).fetchone()
        return None if row is None else SubjectState(row[0])

    def count(self, state: SubjectState = SubjectState.ACTIVE) -> int:
        """Number of subjects in `state`."""
        with self.db.transaction(write=False) as tx:
            row = tx.execute("SELECT COUNT(*) FROM subjects WHERE state = ?", (state.value,))
            return int(row.fetchone()[0])

    def iter_ids(
        self, state: SubjectState = SubjectState.ACTIVE, page: int = 1000
    ) -> Iterator[str]:
        """Yield the ids of subjects in `state`, in id order, a page at a time."""
        after = ""
        while True:
            with self.db.transaction(write=False) as tx:
                rows = tx.execute(
                    "SELECT id FROM subjects WHERE state = ? AND id > ? ORDER BY id LIMIT ?",
                    (state.value, after, page),
                ).fetchall()
            if not rows:
                return
            for row in rows:
                yield str(row[0])
            after = str(rows[-1][0])

    def close(self) -> None:
        """Close the database."""
        self.db.close()
