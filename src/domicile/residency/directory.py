"""The subject directory: subject id -> home region. It holds no personal data.

The directory is the single pointer that says which region's vault is authoritative
for a subject, so a subject is always served from exactly one vault. Two-phase
changes leave a marker that `pending()` returns for recovery after a crash:

- registration: `registering` until the vault write is durable, then `active`; a
  registration in flight keeps touching its reservations so that recovery, which
  undoes only idle ones, leaves it alone (`residency.heartbeat`);
- relocation: `moving_to` while the copy is made and verified; the switch of
  `home_region` is one update that also sets `moved_from` until the origin is shredded.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import NamedTuple

from domicile.errors import Conflict, SubjectErased, SubjectNotFound
from domicile.storage.database import Database, Tx
from domicile.storage.migrations import migrate


class DirectoryEntry(NamedTuple):
    """Where a subject lives and what is in flight for it (a named tuple: a batch read
    makes one per id)."""

    id: str
    home_region: str
    state: str
    moving_to: str | None
    moved_from: str | None
    reserved_by: str | None = None
    """Who holds a `registering` reservation: None for a gateway, `migration` for a
    migration page (only the migration's own recovery may undo it)."""
    updated_at: str | None = None
    """When the entry last changed, as `pending` read it (what `claim` compares)."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


_COLUMNS = "id, home_region, state, moving_to, moved_from"


def _entry(row: tuple[object, ...]) -> DirectoryEntry:
    return DirectoryEntry(
        id=str(row[0]),
        home_region=str(row[1]),
        state=str(row[2]),
        moving_to=None if row[3] is None else str(row[3]),
        moved_from=None if row[4] is None else str(row[4]),
        reserved_by=None if len(row) < 6 or row[5] is None else str(row[5]),
        updated_at=None if len(row) < 7 else str(row[6]),
    )


def _update_registering(tx: Tx, assignment: str, subject_ids: Sequence[str]) -> int:
    """Run `SET {assignment}` (whose one parameter is the time now) on the ids still
    `registering`, 500 ids per statement; return how many rows it changed."""
    now = _now()
    changed = 0
    for start in range(0, len(subject_ids), 500):
        chunk = tuple(subject_ids[start : start + 500])
        marks = ", ".join("?" for _ in chunk)
        changed += tx.execute(
            f"UPDATE subject_directory SET {assignment}"
            f" WHERE state = 'registering' AND id IN ({marks})",
            (now, *chunk),
        ).rowcount
    return changed


class SubjectDirectory:
    """The directory in a control database (SQLite file or PostgreSQL schema)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        migrate(db, "directory", "domicile.residency")
        self._lock = " FOR UPDATE" if db.dialect == "postgres" else ""

    def reserve(self, placements: Sequence[tuple[str, str]]) -> None:
        """Record (subject id, home region) pairs as `registering`."""
        now = _now()
        with self.db.transaction() as tx:
            tx.executemany(
                f"INSERT INTO subject_directory ({_COLUMNS}, created_at, updated_at)"
                " VALUES (?, ?, 'registering', NULL, NULL, ?, ?)",
                [(subject_id, region, now, now) for subject_id, region in placements],
            )

    def activate(self, subject_ids: Sequence[str]) -> None:
        """Mark reserved subjects active: their vault writes are durable.

        All or none: Conflict, and nothing activated, if any reservation is gone (another
        process's recovery undid it), so a registration never reports a subject that
        the directory does not hold.
        """
        with self.db.transaction() as tx:
            activated = _update_registering(tx, "state = 'active', updated_at = ?", subject_ids)
            if activated != len(set(subject_ids)):
                raise Conflict(
                    f"{len(set(subject_ids)) - activated} of {len(subject_ids)} reservations"
                    " were undone before they could be activated (another process recovered"
                    " them); nothing was registered"
                )

    def touch(self, subject_ids: Sequence[str]) -> int:
        """Mark reservations as still being worked on; return how many are still reserved.

        Bumps `updated_at` of the ids still `registering` (activated, forgotten or
        undone ones are left as they are), so a recovery that waits for reservations to
        be idle leaves a slow registration alone.
        """
        with self.db.transaction() as tx:
            return _update_registering(tx, "updated_at = ?", subject_ids)

    def forget(self, subject_ids: Sequence[str]) -> None:
        """Drop reservations whose registration did not complete."""
        with self.db.transaction() as tx:
            tx.executemany(
                "DELETE FROM subject_directory WHERE id = ? AND state = 'registering'",
                [(subject_id,) for subject_id in subject_ids],
            )

    def lookup(self, subject_id: str) -> DirectoryEntry:
        """Return an active subject's entry; SubjectNotFound or SubjectErased otherwise."""
        rows = self.db.query(
            f"SELECT {_COLUMNS} FROM subject_directory WHERE id = ?", (subject_id,)
        )
        return self._entry_of(subject_id, rows[0] if rows else None)

    def _lookup(self, tx: Tx, subject_id: str, lock: str = "") -> DirectoryEntry:
        row = tx.execute(
            f"SELECT {_COLUMNS} FROM subject_directory WHERE id = ?{lock}", (subject_id,)
        ).fetchone()
        return self._entry_of(subject_id, row)

    @staticmethod
    def _entry_of(subject_id: str, row: tuple[object, ...] | None) -> DirectoryEntry:
        if row is None or row[2] == "registering":
            raise SubjectNotFound(f"no subject `{subject_id}`")
        if row[2] == "erased":
            raise SubjectErased(f"subject `{subject_id}` was erased")
        return _entry(row)

    def lookup_many(self, subject_ids: Sequence[str]) -> dict[str, DirectoryEntry]:
        """Entries of the given ids that exist in any state but `registering`."""
        out: dict[str, DirectoryEntry] = {}
        with self.db.transaction(write=False) as tx:
            for start in range(0, len(subject_ids), 500):
                chunk = subject_ids[start : start + 500]
                marks = ", ".join("?" for _ in chunk)
                rows = tx.execute(
                    f"SELECT {_COLUMNS} FROM subject_directory WHERE id IN ({marks})"
                    " AND state <> 'registering'",
                    tuple(chunk),
                ).fetchall()
                out.update((str(r[0]), _entry(r)) for r in rows)
        return out

    def mark_erased(self, subject_id: str) -> None:
        """Record that a subject was erased (the entry stays as a tombstone)."""
        with self.db.transaction() as tx:
            tx.execute(
                "UPDATE subject_directory SET state = 'erased', updated_at = ? WHERE id = ?",
                (_now(), subject_id),
            )

    def begin_move(self, subject_id: str, destination: str) -> DirectoryEntry:
        """Mark a move in flight; Conflict if another is."""
        with self.db.transaction() as tx:
            entry = self._lookup(tx, subject_id, self._lock)
            if entry.moving_to or entry.moved_from:
                raise Conflict(f"subject `{subject_id}` is already being relocated")
            tx.execute(
                "UPDATE subject_directory SET moving_to = ?, updated_at = ? WHERE id = ?",
                (destination, _now(), subject_id),
            )
        return entry

    def switch_home(self, subject_id: str, destination: str) -> None:
        """Make `destination` authoritative in one update; the origin awaits shredding."""
        with self.db.transaction() as tx:
            cursor = tx.execute(
                "UPDATE subject_directory SET moved_from = home_region, home_region = ?,"
                " moving_to = NULL, updated_at = ? WHERE id = ? AND moving_to = ?",
                (destination, _now(), subject_id, destination),
            )
            if cursor.rowcount != 1:
                raise Conflict(f"subject `{subject_id}` has no move to `{destination}` in flight")

    def settle_move(self, subject_id: str) -> None:
        """Clear the in-flight markers once the origin is shredded or the copy discarded."""
        with self.db.transaction() as tx:
            tx.execute(
                "UPDATE subject_directory SET moving_to = NULL, moved_from = NULL, updated_at = ?"
                " WHERE id = ?",
                (_now(), subject_id),
            )

    def pending(self, idle_since: str | None = None) -> list[DirectoryEntry]:
        """Entries left mid-registration or mid-relocation (for crash recovery); with
        `idle_since` (a time as the directory writes them), only those unchanged since."""
        idle = "" if idle_since is None else " AND updated_at < ?"
        with self.db.transaction(write=False) as tx:
            rows = tx.execute(
                f"SELECT {_COLUMNS}, reserved_by, updated_at FROM subject_directory WHERE (state ="
                f" 'registering' OR moving_to IS NOT NULL OR moved_from IS NOT NULL){idle}",
                () if idle_since is None else (idle_since,),
            ).fetchall()
        return [_entry(r) for r in rows]

    def claim(self, entries: Sequence[DirectoryEntry]) -> list[DirectoryEntry]:
        """Those of `entries` (as `pending` read them) that nobody changed since, each
        taken by bumping its `updated_at` in one compare-and-set: of two recoveries that
        read the same entry (two gateways on one directory) only one goes on with it, and
        the other's `pending` leaves it alone while it is fresh."""
        now = _now()
        claimed: list[DirectoryEntry] = []
        with self.db.transaction() as tx:
            for entry in entries:
                cursor = tx.execute(
                    "UPDATE subject_directory SET updated_at = ? WHERE id = ? AND updated_at = ?",
                    (now, entry.id, entry.updated_at),
                )
                if cursor.rowcount == 1:
                    claimed.append(entry._replace(updated_at=now))
        return claimed

    def counts(self) -> dict[str, int]:
        """Number of active subjects per home region."""
        with self.db.transaction(write=False) as tx:
            rows = tx.execute(
                "SELECT home_region, COUNT(*) FROM subject_directory WHERE state = 'active'"
                " GROUP BY home_region"
            ).fetchall()
        return {str(r[0]): int(r[1]) for r in rows}
