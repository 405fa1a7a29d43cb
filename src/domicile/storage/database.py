"""One small interface over SQLite and PostgreSQL so each store writes its SQL once.

Stores write SQL with `?` placeholders in the common subset of both dialects; the
PostgreSQL side rewrites placeholders. Each store keeps one migration folder per
dialect for the DDL, where the two differ (BLOB vs BYTEA, …).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from domicile.errors import Conflict, StorageError
from domicile.storage.url import SqliteUrl, StorageUrl

if TYPE_CHECKING:
    from domicile.storage.postgres import PostgresDatabase

Dialect = Literal["sqlite", "postgres"]
Params = Sequence[Any]


class Cursor(Protocol):
    """The part of a DB-API cursor the stores use."""

    @property
    def rowcount(self) -> int:
        """Rows the last statement touched."""

    def fetchone(self) -> Any:
        """Next row or None."""

    def fetchall(self) -> list[Any]:
        """All remaining rows."""


class Tx(Protocol):
    """A transaction: statements with `?` placeholders."""

    def execute(self, statement: str, params: Params = ()) -> Cursor:
        """Run one statement."""

    def executemany(self, statement: str, rows: Sequence[Params]) -> object:
        """Run one statement for many parameter rows."""


class Database(Protocol):
    """A SQLite file or a PostgreSQL schema."""

    @property
    def dialect(self) -> Dialect:
        """Which SQL dialect the statements run in."""

    @property
    def url(self) -> StorageUrl:
        """Where the database is."""

    def transaction(self, *, write: bool = True) -> AbstractContextManager[Tx]:
        """Run a block in one transaction; commit on success, roll back on error."""

    def query(self, statement: str, params: Params = ()) -> list[Any]:
        """Run one read-only statement on its own (atomic by itself) and return its rows."""

    def close(self) -> None:
        """Release every connection."""


class SqliteDatabase:
    """A SQLite file; each thread gets its own connection (WAL, synchronous=FULL)."""

    dialect: Dialect = "sqlite"

    def __init__(self, url: SqliteUrl) -> None:
        self.url = url
        self.path = url.path
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = _open_sqlite(self.path)
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[Tx]:
        """Writers take the write lock up front (BEGIN IMMEDIATE) so no upgrade can deadlock."""
        conn = self._connection()
        try:
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        except sqlite3.Error as exc:
            raise StorageError(f"cannot begin a transaction on `{self.path.name}`: {exc}") from exc
        try:
            yield conn
        except sqlite3.IntegrityError as exc:
            conn.execute("ROLLBACK")
            raise Conflict(f"constraint violated in `{self.path.name}`: {exc}") from exc
        except sqlite3.Error as exc:
            conn.execute("ROLLBACK")
            raise StorageError(f"sqlite error in `{self.path.name}`: {exc}") from exc
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            conn.execute("ROLLBACK")
            raise StorageError(f"commit failed on `{self.path.name}`: {exc}") from exc

    def query(self, statement: str, params: Params = ()) -> list[Any]:
        """Run one read-only statement in autocommit mode: no BEGIN/COMMIT round trips."""
        try:
            return self._connection().execute(statement, params).fetchall()
        except sqlite3.Error as exc:
            raise StorageError(f"sqlite error in `{self.path.name}`: {exc}") from exc

    def checkpoint(self) -> None:
        """Copy the write-ahead log into the database file and truncate it."""
        try:
            self._connection().execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            raise StorageError(f"wal checkpoint failed on `{self.path.name}`: {exc}") from exc

    def close(self) -> None:
        """Close every connection this database opened."""
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()


_BUSY_SECONDS = 30.0  # how long a statement waits for another connection's lock


def _use_wal(conn: sqlite3.Connection) -> None:
    """Switch to write-ahead logging. Processes opening one new file at once each try
    the switch, and SQLite answers "locked" to all but one without waiting for it (the
    busy timeout does not cover this lock), so the others retry while the timeout lasts."""
    deadline = time.monotonic() + _BUSY_SECONDS
    delay = 0.001
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            busy = exc.sqlite_errorcode in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
            if not busy or time.monotonic() >= deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def _open_sqlite(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        conn = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=_BUSY_SECONDS
        )
        _use_wal(conn)
        # FULL: a commit is on disk before it is acknowledged.
        conn.execute("PRAGMA synchronous=FULL")
        # Overwrite deleted content so shredded ciphertext and keys leave no pages behind.
        conn.execute("PRAGMA secure_delete=ON")
    except sqlite3.Error as exc:
        raise StorageError(f"cannot open sqlite database `{path}`: {exc}") from exc
    return conn


def open_database(url: StorageUrl) -> SqliteDatabase | PostgresDatabase:
    """Open the database a storage url names."""
    if isinstance(url, SqliteUrl):
        return SqliteDatabase(url)
    # Imported here: psycopg costs a process about 25 MiB, and the preparing and export
    # worker processes, which only ever see SQLite or no database, import this module.
    from domicile.storage.postgres import PostgresDatabase

    return PostgresDatabase(url)


ROWS_PER_INSERT = 256
"""Rows per statement of `insert_values` (under SQLite's and PostgreSQL's parameter limits
for rows of up to 100 parameters)."""


def insert_values(tx: Tx, head: str, row: str, rows: Sequence[Params]) -> None:
    """Insert `rows` as `{head} {row}, {row}, …` statements of `ROWS_PER_INSERT` rows each,
    the last few with `executemany`; e.g. `insert_values(tx, "INSERT INTO t (a, b) VALUES",
    "(?, ?)", rows)`.

    One step of a multi-row statement does the work of hundreds of `executemany` steps,
    each of which binds in Python and gives up and takes back the GIL: a bulk load costs
    less CPU, and in a process whose other threads run Python meanwhile it does not
    queue for the GIL at every row. Full statements share one text, so a connection
    caches one prepared statement for them.
    """
    full = len(rows) - len(rows) % ROWS_PER_INSERT
    if full:
        statement = f"{head} {', '.join([row] * ROWS_PER_INSERT)}"
        for start in range(0, full, ROWS_PER_INSERT):
            tx.execute(statement, tuple(chain.from_iterable(rows[start : start + ROWS_PER_INSERT])))
    if full < len(rows):
        tx.executemany(f"{head} {row}", rows[full:])
