"""Migration progress in the control database: batches, moved rows, quarantine.

The state machine of one page of legacy rows, per destination-region batch::

    copying ──▶ moved ──▶ (recorded) ──▶ removed
    (intent)    (vault     (ledger        (ledger entry and
                verified)   entry)         source rows done)

`copying` is written, with the directory's `registering` reservations, before any key
or vault row exists; `moved` flips those reservations to `active` in the same
transaction. A run goes from `moved` to `removed` in one step once the ledger entry
is durable and the source rows are gone; `recorded` is left only by recovery (and by
runs of earlier versions). A legacy key is the primary key of `migrate_rows`, so a row can never be
moved twice. Nothing here holds personal data: legacy keys, subject ids, regions,
keyed digests and counts.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson

from domicile.migrate.classify import Quarantined
from domicile.storage.database import Database, Tx, insert_values
from domicile.storage.migrations import migrate


@dataclass(frozen=True)
class BatchRow:
    """One moved row as the progress table keeps it."""

    key: str
    subject_id: str
    region: str
    digest: bytes


@dataclass(frozen=True)
class Batch:
    """One batch: the rows of one page bound for one region."""

    batch_id: str
    page: int
    region: str
    state: str
    count: int
    root: bytes
    log_size: int | None = None
    ledger_index: int | None = None


class BatchColumns(Protocol):
    """The rows of one batch as columns, in the order their digests enter the root."""

    @property
    def keys(self) -> Sequence[str]:
        """Legacy keys."""

    @property
    def subject_ids(self) -> Sequence[str]:
        """New subject ids."""

    @property
    def digests(self) -> Sequence[bytes]:
        """Keyed record digests."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


_BATCH_COLUMNS = "batch_id, page, region, state, row_count, root, log_size, ledger_index"


def _batch(row: Any) -> Batch:
    return Batch(
        str(row[0]), int(str(row[1])), str(row[2]), str(row[3]), int(str(row[4])),
        bytes(row[5]),
        None if row[6] is None else int(str(row[6])),
        None if row[7] is None else int(str(row[7])),
    )  # fmt: skip


class ProgressStore:
    """Reads and writes migration progress in the control database."""

    def __init__(self, db: Database, source_id: str) -> None:
        self.db = db
        self.source_id = source_id
        migrate(db, "migrate", "domicile.migrate")

    def register(self, label: str) -> None:
        """Remember the source (its credential-free label) on first use."""
        with self.db.transaction() as tx:
            tx.execute(
                "INSERT INTO migrate_sources (source_id, label, created_at) VALUES (?, ?, ?)"
                " ON CONFLICT (source_id) DO NOTHING",
                (self.source_id, label, _now()),
            )

    def next_page(self) -> int:
        """The number of the next page (pages are numbered across runs)."""
        rows = self.db.query(
            "SELECT MAX(page) FROM migrate_batches WHERE source_id = ?", (self.source_id,)
        )
        return 0 if rows[0][0] is None else int(rows[0][0]) + 1

    def begin_page(
        self,
        batches: Sequence[tuple[Batch, BatchColumns]],
        quarantined: Sequence[Quarantined],
        *,
        release: bool = True,
    ) -> None:
        """Record intent in one transaction: batches, row → subject map, reservations.

        With `release`, rows an earlier run quarantined that are valid now (fixed at
        the source) leave the quarantine; without, none may be quarantined.
        """
        now, sid = _now(), self.source_id
        with self.db.transaction() as tx:
            self._quarantine(tx, quarantined, now)
            if not batches:
                return
            tx.executemany(
                "INSERT INTO migrate_batches (source_id, batch_id, page, region, state,"
                " row_count, root, created_at) VALUES (?, ?, ?, ?, 'copying', ?, ?, ?)",
                [(sid, b.batch_id, b.page, b.region, b.count, b.root, now) for b, _ in batches],
            )
            seq = 0
            for batch, rows in batches:
                self._insert_rows(tx, batch, rows, seq)
                seq += len(rows.keys)
                # The directory's own two-phase marker, in the same transaction as the intent;
                # held by the migration, so a gateway starting meanwhile leaves it alone.
                # Taken from the rows just written, in their order (the ids' order).
                tx.execute(
                    "INSERT INTO subject_directory (id, home_region, state, moving_to,"
                    " moved_from, reserved_by, created_at, updated_at)"
                    " SELECT subject_id, region, 'registering', NULL, NULL, 'migration', ?, ?"
                    " FROM migrate_rows WHERE source_id = ? AND batch_id = ? ORDER BY seq",
                    (now, now, sid, batch.batch_id),
                )
                if release:
                    tx.execute(
                        "DELETE FROM migrate_quarantine WHERE source_id = ? AND legacy_key IN"
                        " (SELECT legacy_key FROM migrate_rows WHERE source_id = ?"
                        " AND batch_id = ?)",
                        (sid, sid, batch.batch_id),
                    )

    def _insert_rows(self, tx: Tx, batch: Batch, rows: BatchColumns, seq: int) -> None:
        """A batch's rows of `migrate_rows`, numbered from `seq`.

        On SQLite the batch is bound as three values, not seven per row: the legacy keys
        as one JSON array (`json_each` numbers them), the subject ids (32 hex digits
        each) and the digests (32 bytes each) as one blob each, cut by `substr` (which
        is O(1) on a blob). Per row nothing is bound or built in Python, so the intent
        of a page costs the writer's thread little besides SQLite's own work.
        """
        sid, bid, region = self.source_id, batch.batch_id, batch.region
        ids, digests = rows.subject_ids, rows.digests
        if (
            self.db.dialect == "sqlite"
            and all(len(s) == 32 for s in ids)
            and all(len(d) == 32 for d in digests)
        ):
            if not len(rows.keys) == len(ids) == len(digests):
                raise ValueError("keys, subject ids and digests differ in number")
            tx.execute(
                "INSERT INTO migrate_rows (source_id, legacy_key, batch_id, seq, subject_id,"
                " region, digest) SELECT ?, j.value, ?, ? + j.key,"
                " CAST(substr(?, 32 * j.key + 1, 32) AS TEXT), ?, substr(?, 32 * j.key + 1, 32)"
                " FROM json_each(?) AS j",
                (sid, bid, seq, "".join(ids).encode("ascii"), region, b"".join(digests),
                 orjson.dumps(list(rows.keys)).decode()),
            )  # fmt: skip
            return
        insert_values(
            tx,
            "INSERT INTO migrate_rows (source_id, legacy_key, batch_id, seq, subject_id,"
            " region, digest) VALUES",
            "(?, ?, ?, ?, ?, ?, ?)",
            [(sid, key, bid, seq + i, subject_id, region, digest)
             for i, (key, subject_id, digest)
             in enumerate(zip(rows.keys, ids, digests, strict=True))],
        )  # fmt: skip

    def has_quarantine(self) -> bool:
        """Whether any row of this source is quarantined (a run reads each live row
        once, so only rows quarantined before it began can come back valid during it)."""
        rows = self.db.query(
            "SELECT 1 FROM migrate_quarantine WHERE source_id = ? LIMIT 1", (self.source_id,)
        )
        return bool(rows)

    def _quarantine(self, tx: Tx, quarantined: Sequence[Quarantined], now: str) -> None:
        tx.executemany(
            "INSERT INTO migrate_quarantine (source_id, legacy_key, reason, seen_at)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (source_id, legacy_key)"
            " DO UPDATE SET reason = excluded.reason",
            [(self.source_id, q.key, q.reason, now) for q in quarantined],
        )

    def mark_moved(self, page: int, log_sizes: dict[str, int], batch_ids: Sequence[str]) -> None:
        """The page's vault copies (its batches `batch_ids`) are verified: activate the
        subjects, note each log's size."""
        sid = self.source_id
        with self.db.transaction() as tx:
            # The subjects are found through the page's own batches (the batch index of
            # `migrate_rows`): a join from the page number let SQLite walk every row of
            # the source moved so far, on every page.
            marks = ", ".join("?" for _ in batch_ids)
            tx.execute(
                "UPDATE subject_directory SET state = 'active', updated_at = ?"
                " WHERE state = 'registering' AND id IN (SELECT subject_id FROM migrate_rows"
                f" WHERE source_id = ? AND batch_id IN ({marks}))",
                (_now(), sid, *batch_ids),
            )
            tx.executemany(
                "UPDATE migrate_batches SET state = 'moved', log_size = ?"
                " WHERE source_id = ? AND page = ? AND region = ? AND state = 'copying'",
                [(size, sid, page, region) for region, size in log_sizes.items()],
            )

    def mark_recorded(self, indices: dict[str, int]) -> None:
        """Each batch's migration-batch entry is durable at `indices[batch_id]`."""
        with self.db.transaction() as tx:
            tx.executemany(
                "UPDATE migrate_batches SET state = 'recorded', ledger_index = ?"
                " WHERE source_id = ? AND batch_id = ? AND state = 'moved'",
                [(index, self.source_id, bid) for bid, index in indices.items()],
            )

    def mark_done(self, page: int, indices: dict[str, int]) -> None:
        """The page's entries are durable at `indices[batch_id]` and its source rows are
        gone: `recorded` and `removed` in one step (a crash before it leaves `moved`,
        whose recovery finds the entries in the ledger)."""
        with self.db.transaction() as tx:
            tx.executemany(
                "UPDATE migrate_batches SET state = 'removed', ledger_index = ?"
                " WHERE source_id = ? AND page = ? AND batch_id = ? AND state = 'moved'",
                [(index, self.source_id, page, bid) for bid, index in indices.items()],
            )

    def mark_removed(self, page: int) -> None:
        """The page's rows are gone from the source."""
        with self.db.transaction() as tx:
            tx.execute(
                "UPDATE migrate_batches SET state = 'removed'"
                " WHERE source_id = ? AND page = ? AND state = 'recorded'",
                (self.source_id, page),
            )

    def discard_page(self, page: int) -> list[BatchRow]:
        """Forget an unfinished copy (its rows are still at the source); return its rows."""
        rows = [r for b in self.batches(page=page) for r in self.rows(b.batch_id)]
        sid = self.source_id
        with self.db.transaction() as tx:
            tx.executemany(
                "DELETE FROM subject_directory WHERE id = ? AND state = 'registering'",
                [(r.subject_id,) for r in rows],
            )
            tx.execute(
                "DELETE FROM migrate_rows WHERE source_id = ? AND batch_id IN"
                " (SELECT batch_id FROM migrate_batches WHERE source_id = ? AND page = ?)",
                (sid, sid, page),
            )
            tx.execute("DELETE FROM migrate_batches WHERE source_id = ? AND page = ?", (sid, page))
        return rows

    def batches(self, *, page: int | None = None, state: str | None = None) -> list[Batch]:
        """Batches of this source, by page, optionally of one page or state."""
        where = "source_id = ?"
        params: list[object] = [self.source_id]
        if page is not None:
            where, params = where + " AND page = ?", [*params, page]
        if state is not None:
            where, params = where + " AND state = ?", [*params, state]
        rows = self.db.query(
            f"SELECT {_BATCH_COLUMNS} FROM migrate_batches WHERE {where} ORDER BY page, region",
            tuple(params),
        )
        return [_batch(r) for r in rows]

    def unfinished(self) -> list[Batch]:
        """Batches a crash left before `removed`, oldest page first."""
        return [b for b in self.batches() if b.state != "removed"]

    def rows(self, batch_id: str) -> list[BatchRow]:
        """The rows of one batch, in the order their digests enter the Merkle root."""
        return [
            BatchRow(str(r[0]), str(r[1]), str(r[2]), bytes(r[3]))
            for r in self.db.query(
                "SELECT legacy_key, subject_id, region, digest FROM migrate_rows"
                " WHERE source_id = ? AND batch_id = ? ORDER BY seq",
                (self.source_id, batch_id),
            )
        ]

    def moved_among(self, keys: Sequence[str]) -> set[str]:
        """Which of `keys` were moved (any state past `copying`)."""
        out: set[str] = set()
        for start in range(0, len(keys), 500):
            chunk = list(keys[start : start + 500])
            if self.db.dialect == "postgres":
                # One array joined to the primary key: an `IN (…)` list, once the prepared
                # statement goes over to a generic plan, is planned as a walk of the
                # batch index over every row of the source (2.4 s a chunk at 200k rows).
                rows = self.db.query(
                    "SELECT r.legacy_key FROM unnest(?::text[]) AS k (key)"
                    " JOIN migrate_rows r ON r.source_id = ? AND r.legacy_key = k.key"
                    " JOIN migrate_batches b"
                    " ON b.source_id = r.source_id AND b.batch_id = r.batch_id"
                    " WHERE b.state <> 'copying'",
                    (chunk, self.source_id),
                )
            else:
                marks = ", ".join("?" for _ in chunk)
                rows = self.db.query(
                    "SELECT r.legacy_key FROM migrate_rows r JOIN migrate_batches b"
                    " ON b.source_id = r.source_id AND b.batch_id = r.batch_id WHERE"
                    f" r.source_id = ? AND b.state <> 'copying' AND r.legacy_key IN ({marks})",
                    (self.source_id, *chunk),
                )
            out.update(str(r[0]) for r in rows)
        return out

    def quarantine(self) -> Iterator[tuple[str, str]]:
        """(legacy key, reason) of every quarantined row."""
        for row in self.db.query(
            "SELECT legacy_key, reason FROM migrate_quarantine WHERE source_id = ?"
            " ORDER BY legacy_key",
            (self.source_id,),
        ):
            yield str(row[0]), str(row[1])

    def quarantined_among(self, keys: Sequence[str]) -> set[str]:
        """Which of `keys` are in quarantine."""
        out: set[str] = set()
        for start in range(0, len(keys), 500):
            chunk = list(keys[start : start + 500])
            marks = ", ".join("?" for _ in chunk)
            rows = self.db.query(
                "SELECT legacy_key FROM migrate_quarantine WHERE source_id = ?"
                f" AND legacy_key IN ({marks})",
                (self.source_id, *chunk),
            )
            out.update(str(r[0]) for r in rows)
        return out

    def counts(self) -> dict[str, int]:
        """Rows per batch state, and quarantined rows."""
        out = {
            str(r[0]): int(r[1])
            for r in self.db.query(
                "SELECT state, SUM(row_count) FROM migrate_batches WHERE source_id = ?"
                " GROUP BY state",
                (self.source_id,),
            )
        }
        rows = self.db.query(
            "SELECT COUNT(*) FROM migrate_quarantine WHERE source_id = ?", (self.source_id,)
        )
        out["quarantined"] = int(rows[0][0])
        return out
