"""Move the counts an earlier version kept in the control database into their own, once.

Migration 0003 of the control database's `transfers` component renamed its counter
tables to `legacy_transfer_*`; `move_legacy_counts` copies them, in key order and in
pages, into the counters' database inside one transaction that also records the move
(`transfer_counts_moved`), then drops them. A crash before that commit leaves the
legacy tables for the next start to copy again; one after it, tables the next start
only drops. Two processes starting at once copy once (the transaction holds the
counters' write lock: SQLite `BEGIN IMMEDIATE`, PostgreSQL a table lock).

Stop every gateway of the older version before starting this one: a count it makes in
the control database after the move is not carried over.
"""

from __future__ import annotations

from datetime import UTC, datetime

from domicile.storage.database import Database, Tx, insert_values

__all__ = ["move_legacy_counts"]

_PAGE = 20_000  # rows read from the control database per query
_TABLES = (  # table, columns, how many of them make its key
    ("transfer_counters", ("scope", "data_class", "total", "expired_through"), 2),
    ("transfer_buckets", ("scope", "data_class", "at_s", "subjects"), 3),
    ("transfer_subjects", ("scope", "data_class", "subject_ref", "last_at"), 3),
)


def move_legacy_counts(target: Database, source: Database) -> int:
    """Copy `source`'s `legacy_transfer_*` tables into `target`'s counters (once) and drop
    them; return the subject refs copied (0 when there was nothing left to copy)."""
    if not _has_table(source, "legacy_transfer_subjects"):
        return 0
    moved = 0
    with target.transaction() as tx:
        if target.dialect == "postgres":
            tx.execute("LOCK TABLE transfer_counts_moved IN EXCLUSIVE MODE")
        if not tx.execute("SELECT COUNT(*) FROM transfer_counts_moved").fetchone()[0]:
            for table, columns, key in _TABLES:
                moved = _copy(tx, source, table, columns, key)
            tx.execute(
                "INSERT INTO transfer_counts_moved (moved_at, subjects) VALUES (?, ?)",
                (datetime.now(UTC).isoformat(timespec="seconds"), moved),
            )
    with source.transaction() as legacy:
        for table, _, _ in _TABLES:
            legacy.execute(f"DROP TABLE IF EXISTS legacy_{table}")
    return moved


def _has_table(db: Database, name: str) -> bool:
    if db.dialect == "postgres":
        return db.query("SELECT to_regclass(?) IS NOT NULL", (name,))[0][0] is True
    tables = db.query(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
    )
    return bool(tables[0][0])


def _copy(tx: Tx, source: Database, table: str, columns: tuple[str, ...], key: int) -> int:
    """Copy legacy `table` into `table` a page at a time (keyset order); return its rows."""
    names, keys = ", ".join(columns), ", ".join(columns[:key])
    marks = f"({', '.join('?' * len(columns))})"
    copied, after = 0, None
    while True:
        where = "" if after is None else f" WHERE ({keys}) > ({', '.join('?' * key)})"
        rows = source.query(
            f"SELECT {names} FROM legacy_{table}{where} ORDER BY {keys} LIMIT {_PAGE}",
            after or (),
        )
        if not rows:
            return copied
        insert_values(tx, f"INSERT INTO {table} ({names}) VALUES", marks, [tuple(r) for r in rows])
        copied += len(rows)
        after = tuple(rows[-1][:key])
