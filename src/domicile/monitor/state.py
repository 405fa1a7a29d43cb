"""The monitor's own state: one SQLite file by default, or a PostgreSQL schema (backend.py).

It keeps, per log: the last verified checkpoint and the compact range of its tree (to
resume without re-reading the log), every checkpoint seen (from the gateway or sent to
the witness), the checkpoint last cosigned, the policy versions the log recorded, one
row of facts per entry (for cross-checks, thresholds and reports), and every alert.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from domicile.ledger.merkle import HASH_SIZE, CompactRange
from domicile.monitor.alerts import Alert, now
from domicile.monitor.backend import Connection, open_backend

_SCHEMA = """
CREATE TABLE IF NOT EXISTS logs (
    origin TEXT PRIMARY KEY, size INTEGER NOT NULL, root BLOB NOT NULL,
    note TEXT NOT NULL, frontier BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS checkpoints (
    origin TEXT NOT NULL, size INTEGER NOT NULL, root BLOB NOT NULL, note TEXT NOT NULL,
    source TEXT NOT NULL, seen_at TEXT NOT NULL, consistent INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (origin, size, root)
);
CREATE TABLE IF NOT EXISTS witnessed (
    origin TEXT PRIMARY KEY, size INTEGER NOT NULL, root BLOB NOT NULL, note TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS policies (
    origin TEXT NOT NULL, policy_hash TEXT NOT NULL, idx INTEGER NOT NULL,
    record TEXT NOT NULL, PRIMARY KEY (origin, policy_hash)
);
CREATE TABLE IF NOT EXISTS facts (
    origin TEXT NOT NULL, idx INTEGER NOT NULL, time TEXT NOT NULL, kind TEXT NOT NULL,
    result TEXT, action TEXT, principal TEXT, entity TEXT, purpose TEXT,
    decision_id TEXT, subject_ref TEXT, detail TEXT,
    PRIMARY KEY (origin, idx)
) WITHOUT ROWID;
DROP INDEX IF EXISTS facts_time;
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY, time TEXT NOT NULL, kind TEXT NOT NULL, origin TEXT NOT NULL,
    severity TEXT NOT NULL, message TEXT NOT NULL, idx INTEGER, evidence TEXT NOT NULL,
    dedup TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS kv (name TEXT PRIMARY KEY, value TEXT NOT NULL);
-- cross-checks (consistency.py): agreement and destination versions, erasures,
-- migration batches and relocations, per log
CREATE TABLE IF NOT EXISTS agreements (
    origin TEXT NOT NULL, name TEXT NOT NULL, idx INTEGER NOT NULL, record TEXT NOT NULL,
    PRIMARY KEY (origin, name, idx)
);
CREATE TABLE IF NOT EXISTS destinations (
    origin TEXT NOT NULL, name TEXT NOT NULL, idx INTEGER NOT NULL, record TEXT NOT NULL,
    PRIMARY KEY (origin, name, idx)
);
CREATE TABLE IF NOT EXISTS erasures (
    origin TEXT NOT NULL, subject_ref TEXT NOT NULL, idx INTEGER NOT NULL,
    PRIMARY KEY (origin, subject_ref)
);
CREATE TABLE IF NOT EXISTS batches (
    source TEXT NOT NULL, batch_id TEXT NOT NULL, origin TEXT NOT NULL, idx INTEGER NOT NULL,
    root TEXT NOT NULL, count INTEGER NOT NULL, PRIMARY KEY (source, batch_id)
);
CREATE TABLE IF NOT EXISTS relocations (
    relocation_id TEXT NOT NULL, direction TEXT NOT NULL, origin TEXT NOT NULL,
    idx INTEGER NOT NULL, time TEXT NOT NULL, peer TEXT NOT NULL,
    PRIMARY KEY (relocation_id, direction)
);
"""

FORGETTABLE = ("agreements", "destinations", "erasures", "batches", "relocations")
"""Cross-check tables whose rows of unverified entries are dropped with the facts."""

COLUMNS = {
    "kv": ("name", "value"),
    "agreements": ("origin", "name", "idx", "record"),
    "destinations": ("origin", "name", "idx", "record"),
    "erasures": ("origin", "subject_ref", "idx"),
    "relocations": ("relocation_id", "direction", "origin", "idx", "time", "peer"),
}
"""Column order of the tables written by `upsert_sql` from tuples."""

UPSERT_KEYS = {
    "kv": ("name",),
    "facts": ("origin", "idx"),
    "agreements": ("origin", "name", "idx"),
    "destinations": ("origin", "name", "idx"),
    "erasures": ("origin", "subject_ref"),
    "relocations": ("relocation_id", "direction"),
}
"""The primary key of each table that is written by `upsert_sql`."""


def upsert_sql(table: str, columns: Sequence[str] | None = None) -> str:
    """Portable INSERT … ON CONFLICT (key) DO UPDATE for one row of `columns`."""
    columns = columns or COLUMNS[table]
    keys = UPSERT_KEYS[table]
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in keys)
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        f" ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updates}"
    )


FACT_COLUMNS = (
    "origin, idx, time, kind, result, action, principal, entity, purpose, "
    "decision_id, subject_ref, detail"
)

SHAPED_ROWS = 64
"""Fact rows per statement in `insert_shaped_facts`."""


@functools.lru_cache(maxsize=8)
def _shaped_sql(rows: int) -> str:
    # Only the four values that differ per row are bound per row; the constant columns
    # are bound once per statement (casts: PostgreSQL infers no type from a bare `?`).
    values = ", ".join(["(?, ?, ?, ?)"] * rows)
    return (
        f"WITH v (idx, time, decision_id, subject_ref) AS (VALUES {values})"
        f" INSERT INTO facts ({FACT_COLUMNS}) SELECT CAST(? AS TEXT), CAST(v.idx AS BIGINT),"
        " v.time, CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS TEXT),"
        " CAST(? AS TEXT), CAST(? AS TEXT), v.decision_id, v.subject_ref, CAST(? AS TEXT)"
        " FROM v"
    )


def insert_shaped_facts(
    db: Connection, origin: str, middle: Sequence[Any], detail: str | None, flat: list[Any]
) -> None:
    """Insert fact rows of `origin` that share every column but four.

    `middle` is kind … purpose and `detail` the detail, the same for every row; `flat`
    holds idx, time, decision_id and subject_ref of each row in turn. The rows must be
    new (`Monitor` drops the facts of a range before it stores it again).
    """
    constants = [origin, *middle, detail]
    width = 4 * SHAPED_ROWS
    full = len(flat) - len(flat) % width
    if full:
        sql = _shaped_sql(SHAPED_ROWS)
        db.executemany(sql, [flat[i : i + width] + constants for i in range(0, full, width)])
    if full < len(flat):
        db.execute(_shaped_sql((len(flat) - full) // 4), flat[full:] + constants)


@dataclass(frozen=True)
class Verified:
    """The last checkpoint of a log whose entries the monitor re-hashed to its root."""

    size: int
    root: bytes
    note: str
    frontier: CompactRange


@dataclass(frozen=True)
class SeenCheckpoint:
    """A checkpoint the monitor has seen, with where it came from."""

    origin: str
    size: int
    root: bytes
    note: str
    source: str
    consistent: bool


class MonitorState:
    """The monitor's state; safe to share between the follower and the server."""

    def __init__(self, location: Path | str) -> None:
        """Open (or create) the state: a SQLite file, or a postgresql:// url."""
        self._db = open_backend(location, _SCHEMA)
        self._lock = threading.RLock()

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """Run statements in one transaction, rolled back if anything raises."""
        with self._lock, self._db.transaction() as db:
            yield db

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a read query and return every row."""
        with self._lock:
            return self._db.query(sql, tuple(params))

    # -- verified logs ------------------------------------------------------------------

    def verified(self, origin: str) -> Verified | None:
        """The last verified checkpoint of `origin`, or None before the first."""
        rows = self.query("SELECT size, root, note, frontier FROM logs WHERE origin = ?", [origin])
        if not rows:
            return None
        size, root, note, blob = rows[0]
        hashes = [blob[i : i + HASH_SIZE] for i in range(0, len(blob), HASH_SIZE)]
        return Verified(size, root, note, CompactRange(size, hashes))

    def set_verified(self, db: Connection, origin: str, verified: Verified) -> None:
        """Store the new last verified checkpoint (inside a transaction)."""
        frontier = b"".join(node.hash for node in verified.frontier.nodes)
        db.execute(
            "INSERT INTO logs VALUES (?, ?, ?, ?, ?) ON CONFLICT (origin) DO UPDATE SET "
            "size = excluded.size, root = excluded.root, note = excluded.note, "
            "frontier = excluded.frontier",
            (origin, verified.size, verified.root, verified.note, frontier),
        )

    # -- checkpoints seen ---------------------------------------------------------------

    def add_checkpoint(
        self, origin: str, size: int, root: bytes, note: str, source: str
    ) -> list[SeenCheckpoint]:
        """Remember a checkpoint; return those seen before with the same size, another root."""
        with self.transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO checkpoints (origin, size, root, note, source, seen_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (origin, size, root, note, source, now()),
            )
            return self._checkpoints("origin = ? AND size = ? AND root != ?", [origin, size, root])

    def unchecked_checkpoints(self, origin: str, below: int) -> list[SeenCheckpoint]:
        """Checkpoints of `origin` smaller than `below` not yet proven consistent."""
        return self._checkpoints(
            "origin = ? AND size < ? AND size > 0 AND consistent = 0", [origin, below]
        )

    def checkpoints(self, origin: str | None = None) -> list[SeenCheckpoint]:
        """Every checkpoint seen (of one origin, or all), smallest first."""
        if origin is None:
            return self._checkpoints("1 = 1", [])
        return self._checkpoints("origin = ?", [origin])

    def mark_consistent(self, origin: str, size: int, root: bytes) -> None:
        """Record that a checkpoint was proven consistent with a verified one."""
        with self.transaction() as db:
            db.execute(
                "UPDATE checkpoints SET consistent = 1 WHERE origin = ? AND size = ? AND root = ?",
                (origin, size, root),
            )

    def _checkpoints(self, where: str, params: list[Any]) -> list[SeenCheckpoint]:
        rows = self.query(
            "SELECT origin, size, root, note, source, consistent FROM checkpoints "
            f"WHERE {where} ORDER BY origin, size",
            params,
        )
        return [SeenCheckpoint(r[0], r[1], r[2], r[3], r[4], bool(r[5])) for r in rows]

    # -- witness ------------------------------------------------------------------------

    def witnessed(self, origin: str) -> tuple[int, bytes, str] | None:
        """The checkpoint of `origin` the witness last cosigned: (size, root, note)."""
        rows = self.query("SELECT size, root, note FROM witnessed WHERE origin = ?", [origin])
        return (rows[0][0], rows[0][1], rows[0][2]) if rows else None

    def set_witnessed(self, origin: str, size: int, root: bytes, note: str, old: int) -> bool:
        """Advance the witnessed checkpoint from `old`; False if another request moved it."""
        with self.transaction() as db:
            row = db.execute("SELECT size FROM witnessed WHERE origin = ?", (origin,)).fetchone()
            if (row[0] if row else 0) != old:
                return False
            db.execute(
                "INSERT INTO witnessed VALUES (?, ?, ?, ?) ON CONFLICT (origin) DO UPDATE SET "
                "size = excluded.size, root = excluded.root, note = excluded.note",
                (origin, size, root, note),
            )
        return True

    # -- policy versions ----------------------------------------------------------------

    def policy_records(self, origin: str) -> list[tuple[str, int, dict[str, Any]]]:
        """Every policy version `origin` recorded: (hash, ledger index, version record)."""
        rows = self.query(
            "SELECT policy_hash, idx, record FROM policies WHERE origin = ? ORDER BY idx",
            [origin],
        )
        return [(r[0], r[1], json.loads(r[2])) for r in rows]

    # -- key-value ----------------------------------------------------------------------

    def get(self, name: str, default: str = "") -> str:
        """A stored value (cursors and such)."""
        rows = self.query("SELECT value FROM kv WHERE name = ?", [name])
        return str(rows[0][0]) if rows else default

    def put(self, name: str, value: str) -> None:
        """Store a value."""
        with self.transaction() as db:
            db.execute(
                "INSERT INTO kv VALUES (?, ?)"
                " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (name, value),
            )

    # -- alerts -------------------------------------------------------------------------

    def add_alert(self, alert: Alert) -> bool:
        """Store an alert; False if the same alert (by its key) was raised before."""
        with self.transaction() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO alerts (time, kind, origin, severity, message, idx,"
                " evidence, dedup) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    now(),
                    alert.kind,
                    alert.origin,
                    alert.severity,
                    alert.message,
                    alert.index,
                    json.dumps(alert.evidence, sort_keys=True),
                    f"{alert.kind}|{alert.origin}|{alert.key}",
                ),
            )
            return cursor.rowcount == 1

    def alerts(self, after: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        """Stored alerts with id > `after`, oldest first."""
        rows = self.query(
            "SELECT id, time, kind, origin, severity, message, idx, evidence FROM alerts "
            "WHERE id > ? ORDER BY id LIMIT ?",
            [after, limit],
        )
        return [
            {
                "id": r[0],
                "time": r[1],
                "kind": r[2],
                "origin": r[3],
                "severity": r[4],
                "message": r[5],
                "index": r[6],
                "evidence": json.loads(r[7]),
            }
            for r in rows
        ]
