"""The read-path baseline: a bare FastAPI endpoint reading one row from SQLite, in the clear.

It does what Domicile's read does at the bottom (one indexed SQLite read on a per-thread
connection in WAL mode, a sync `def` endpoint run in the thread pool, a JSON answer of
the same shape) and nothing else: no authentication, directory, decision, keys or
decryption.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException

COLUMNS = ("email", "phone", "full_name")


def _connect(path: Path) -> sqlite3.Connection:
    # The same connection settings as domicile.storage.database._open_sqlite.
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def create_db(path: Path, rows: Iterable[tuple[str, Mapping[str, Any]]]) -> None:
    """Create the table `people` (id + plaintext columns) holding `rows` of (id, values)."""
    conn = _connect(path)
    try:
        conn.execute(
            "CREATE TABLE people (id TEXT PRIMARY KEY, email TEXT NOT NULL,"
            " phone TEXT NOT NULL, full_name TEXT)"
        )
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO people (id, email, phone, full_name) VALUES (?, ?, ?, ?)",
            [(sid, *(values.get(c) for c in COLUMNS)) for sid, values in rows],
        )
        conn.execute("COMMIT")
    finally:
        conn.close()


def create_app(path: Path | str) -> FastAPI:
    """The baseline app over the SQLite file at `path`."""
    path = Path(path)
    local = threading.local()

    def connection() -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(local, "conn", None)
        if conn is None:
            conn = _connect(path)
            local.conn = conn
        return conn

    app = FastAPI(title="bare baseline")

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/bare/{subject_id}")
    def read(subject_id: str) -> dict[str, Any]:
        row = (
            connection()
            .execute("SELECT email, phone FROM people WHERE id = ?", (subject_id,))
            .fetchone()
        )
        if row is None:
            raise HTTPException(status_code=404, detail="no such row")
        return {
            "id": subject_id,
            "home_region": "bare",
            "version": 1,
            "fields": {"email": row[0], "phone": row[1]},
            "withheld": {},
        }

    return app
