"""The vault of one region: sealed (encrypted) field values per subject, on SQLite or PostgreSQL.

The vault stores only ciphertext made by `domicile.keys.envelope`; it never holds a key
and cannot decrypt. Erasure and relocation leave a tombstone row (state, version, times)
with no field values.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from domicile.errors import SubjectErased, SubjectNotFound, VersionMismatch
from domicile.storage.database import Database, insert_values
from domicile.storage.migrations import migrate


class SubjectState(StrEnum):
    """Life-cycle state of a subject in one vault."""

    ACTIVE = "active"
    ERASED = "erased"
    RELOCATED = "relocated"


@dataclass(frozen=True)
class SealedRecord:
    """A subject's row and the sealed values of the fields asked for."""

    subject_id: str
    region: str
    version: int
    catalog_version: str
    created_at: str
    updated_at: str
    fields: dict[str, bytes] = field(default_factory=dict)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


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
                "INSERT INTO subjects (id, state, version, catalog_version, created_at, updated_at)"
                " VALUES (?, 'active', 1, ?, ?, ?)",
                [(subject_id, catalog_version, now, now) for subject_id in ids],
            )
            tx.executemany(
                "INSERT INTO fields (subject_id, name, sealed) VALUES (?, ?, ?)",
                [
                    (subject_id, name, value)
                    for subject_id, sealed in records
                    for name, value in sealed.items()
                ],
            )

    def insert_rows(
        self,
        subject_ids: Sequence[str],
        rows: Sequence[tuple[str, str, bytes]],
        catalog_version: str,
    ) -> None:
        """Store new subjects from ready (subject id, field, sealed) rows in one transaction.

        `insert_many` for bulk loads that already hold their rows in this shape (no
        per-subject mapping to build): the same checks, all or none.
        """
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
                " updated_at) VALUES",
                "(?, 'active', 1, ?, ?, ?)",
                [(subject_id, catalog_version, now, now) for subject_id in subject_ids],
            )
            insert_values(
                tx, "INSERT INTO fields (subject_id, name, sealed) VALUES", "(?, ?, ?)", rows
            )

    def sealed_rows(self, subject_ids: Sequence[str]) -> tuple[int, list[tuple[str, str, bytes]]]:
        """(active subjects among `subject_ids`, their (subject id, field, sealed) rows
        ordered by subject id then field name in byte order), a few hundred ids per statement."""
        ids = sorted(set(subject_ids))
        collate = ' COLLATE "C"' if self.db.dialect == "postgres" else ""
        active = 0
        out: list[tuple[str, str, bytes]] = []
        for start in range(0, len(ids), _BULK):
            chunk = _bulk_chunk(ids, start)
            counted = self.db.query(
                f"SELECT COUNT(*) FROM subjects WHERE state = 'active' AND id IN ({_BULK_MARKS})",
                chunk,
            )
            active += int(counted[0][0])
            rows = self.db.query(
                f"SELECT subject_id, name, sealed FROM fields WHERE subject_id IN ({_BULK_MARKS})"
                f" ORDER BY subject_id{collate}, name{collate}",
                chunk,
            )
            if self.db.dialect == "sqlite":
                out += rows
            else:
                out += [(str(r[0]), str(r[1]), bytes(r[2])) for r in rows]
        return active, out

    def fetch(self, subject_id: str, names: Collection[str] | None = None) -> SealedRecord:
        """Return a subject's record with the sealed values of `names` (all when None).

        One statement (the row joined with its fields), so it is atomic on its own.
        """
        wanted = "" if names is None else " AND f.name IN (" + ", ".join("?" for _ in names) + ")"
        if names is not None and not names:
            wanted = " AND 1 = 0"
        rows = self.db.query(
            "SELECT s.state, s.version, s.catalog_version, s.created_at, s.updated_at,"
            " f.name, f.sealed FROM subjects s LEFT JOIN fields f ON f.subject_id = s.id"
            f"{wanted} WHERE s.id = ?",
            (*(names or ()), subject_id),
        )
        record = self._record(subject_id, rows[0][:5] if rows else None)
        record.fields.update((str(r[5]), bytes(r[6])) for r in rows if r[5] is not None)
        return record

    def fetch_many(
        self, subject_ids: Sequence[str], names: Collection[str] | None = None
    ) -> dict[str, SealedRecord | SubjectNotFound | SubjectErased]:
        """Fetch several subjects, a few hundred per statement; misses are returned, not raised."""
        rows_by_id: dict[str, list[Any]] = {}
        wanted = "" if names is None else " AND f.name IN (" + ", ".join("?" for _ in names) + ")"
        for start in range(0, len(subject_ids), 400):
            chunk = list(dict.fromkeys(subject_ids[start : start + 400]))
            marks = ", ".join("?" for _ in chunk)
            for row in self.db.query(
                "SELECT s.id, s.state, s.version, s.catalog_version, s.created_at, s.updated_at,"
                " f.name, f.sealed FROM subjects s LEFT JOIN fields f ON f.subject_id = s.id"
                f"{wanted} WHERE s.id IN ({marks})",
                (*(names or ()), *chunk),
            ):
                rows_by_id.setdefault(str(row[0]), []).append(row)
        out: dict[str, SealedRecord | SubjectNotFound | SubjectErased] = {}
        for subject_id in subject_ids:
            rows = rows_by_id.get(subject_id)
            try:
                record = self._record(subject_id, tuple(rows[0][1:6]) if rows else None)
            except (SubjectNotFound, SubjectErased) as exc:
                out[subject_id] = exc
                continue
            record.fields.update((str(r[6]), bytes(r[7])) for r in rows or () if r[6] is not None)
            out[subject_id] = record
        return out

    def fetch_active_page(
        self, after: str, limit: int, names: Collection[str]
    ) -> list[SealedRecord]:
        """The next `limit` active subjects with id > `after`, in id order, with the sealed
        values of `names` (dataset exports walk a vault with it).

        Two statements in one read transaction, whatever the page size: the page's ids,
        then the fields of that id range, read in index order rather than sought per id.
        Field rows exist only for active subjects (a tombstone deletes them).
        """
        marks = ", ".join("?" for _ in names) or "NULL"
        with self.db.transaction(write=False) as tx:
            heads = tx.execute(
                "SELECT id, version, catalog_version, created_at, updated_at FROM subjects"
                " WHERE state = 'active' AND id > ? ORDER BY id LIMIT ?",
                (after, limit),
            ).fetchall()
            if not heads:
                return []
            rows = tx.execute(
                "SELECT subject_id, name, sealed FROM fields WHERE subject_id > ?"
                f" AND subject_id <= ? AND name IN ({marks})",
                (after, heads[-1][0], *names),
            ).fetchall()
        out = {
            str(h[0]): SealedRecord(
                str(h[0]), self.region, int(h[1]), str(h[2]), str(h[3]), str(h[4])
            )
            for h in heads
        }
        for subject_id, name, sealed in rows:
            record = out.get(str(subject_id))
            if record is not None:
                record.fields[str(name)] = bytes(sealed)
        return list(out.values())

    def _record(self, subject_id: str, head: tuple[object, ...] | None) -> SealedRecord:
        if head is None:
            raise SubjectNotFound(f"subject `{subject_id}` is not in region `{self.region}`")
        if head[0] != SubjectState.ACTIVE:
            raise SubjectErased(f"subject `{subject_id}` was {head[0]} in region `{self.region}`")
        return SealedRecord(
            subject_id=subject_id,
            region=self.region,
            version=int(str(head[1])),
            catalog_version=str(head[2]),
            created_at=str(head[3]),
            updated_at=str(head[4]),
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
            head = tx.execute(
                "SELECT state, version, catalog_version, created_at, updated_at"
                " FROM subjects WHERE id = ?" + self._lock_clause,
                (subject_id,),
            ).fetchone()
            record = self._record(subject_id, head)
            if expected_version is not None and record.version != expected_version:
                raise VersionMismatch(
                    f"subject `{subject_id}` is at version {record.version}, not {expected_version}"
                )
            new_version = record.version + 1
            tx.execute(
                "UPDATE subjects SET version = ?, updated_at = ? WHERE id = ?",
                (new_version, _now(), subject_id),
            )
            tx.executemany(
                "INSERT INTO fields (subject_id, name, sealed) VALUES (?, ?, ?)"
                " ON CONFLICT (subject_id, name) DO UPDATE SET sealed = excluded.sealed",
                [(subject_id, name, value) for name, value in sealed.items()],
            )
            tx.executemany(
                "DELETE FROM fields WHERE subject_id = ? AND name = ?",
                [(subject_id, name) for name in remove],
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
            tx.execute("DELETE FROM fields WHERE subject_id = ?", (subject_id,))
            tx.execute(
                "UPDATE subjects SET state = ?, version = version + 1, updated_at = ? WHERE id = ?",
                (state.value, _now(), subject_id),
            )

    def discard(self, subject_id: str) -> None:
        """Remove every trace of a subject that was never authoritative here (failed copy)."""
        with self.db.transaction() as tx:
            tx.execute("DELETE FROM fields WHERE subject_id = ?", (subject_id,))
            tx.execute("DELETE FROM subjects WHERE id = ?", (subject_id,))

    def discard_many(self, subject_ids: Sequence[str]) -> None:
        """`discard` for many subjects of a failed bulk copy, in one transaction."""
        with self.db.transaction() as tx:
            for start in range(0, len(subject_ids), _BULK):
                chunk = _bulk_chunk(subject_ids, start)
                tx.execute(f"DELETE FROM fields WHERE subject_id IN ({_BULK_MARKS})", chunk)
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
