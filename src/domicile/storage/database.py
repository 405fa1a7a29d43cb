"""One small interface over SQLite and PostgreSQL so each store writes its SQL once.

Stores write SQL with `?` placeholders in the common subset of both dialects; the
PostgreSQL side rewrites placeholders. Each store keeps one migration folder per
dialect for the DDL, where the two differ (BLOB vs BYTEA, …).
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from itertools import chain
from pathlib import Path
from typing import Any, Literal, Protocol

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool, PoolTimeout

from domicile.errors import Conflict, StorageError
from domicile.storage.url import PostgresUrl, SqliteUrl, StorageUrl

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


def _open_sqlite(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk before it is acknowledged.
        conn.execute("PRAGMA synchronous=FULL")
        # Overwrite deleted content so shredded ciphertext and keys leave no pages behind.
        conn.execute("PRAGMA secure_delete=ON")
        conn.execute("PRAGMA busy_timeout=30000")
    except sqlite3.Error as exc:
        raise StorageError(f"cannot open sqlite database `{path}`: {exc}") from exc
    return conn


_PLACEHOLDER = re.compile(r"\?")


class _PgTx:
    """Adapts a psycopg connection to `Tx`: `?` placeholders become `%s`."""

    __slots__ = ("_conn",)
    _cache: dict[str, str] = {}  # noqa: RUF012 - shared translation cache, keys are our own SQL

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    @classmethod
    def _translate(cls, statement: str) -> str:
        out = cls._cache.get(statement)
        if out is None:
            out = _PLACEHOLDER.sub("%s", statement)
            cls._cache[statement] = out
        return out

    def execute(self, statement: str, params: Params = ()) -> Cursor:
        """Run one statement."""
        return self._conn.execute(self._translate(statement), params)

    def executemany(self, statement: str, rows: Sequence[Params]) -> object:
        """Run one statement for many parameter rows."""
        with self._conn.cursor() as cur:
            cur.executemany(self._translate(statement), rows)
        return None


class PostgresDatabase:
    """A schema in a PostgreSQL database, reached through a connection pool."""

    dialect: Dialect = "postgres"

    def __init__(self, url: PostgresUrl, *, max_size: int = 16) -> None:
        self.url = url
        try:
            with psycopg.connect(url.dsn, autocommit=True, connect_timeout=10) as conn:
                conn.execute(
                    sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(url.schema))
                )
        except psycopg.errors.UniqueViolation:
            pass  # another process created it at the same moment
        except psycopg.Error as exc:
            raise StorageError(f"cannot reach postgresql for schema `{url.schema}`: {exc}") from exc
        self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            url.dsn,
            min_size=1,
            max_size=max_size,
            kwargs={"options": f"-c search_path={url.schema}"},
            open=True,
        )

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[Tx]:
        """Run a block in one transaction on a pooled connection."""
        del write  # PostgreSQL takes row locks as the statements need them.
        try:
            with self._pool.connection() as conn, conn.transaction():
                yield _PgTx(conn)
        except psycopg.errors.IntegrityError as exc:
            raise Conflict(f"constraint violated in schema `{self.url.schema}`: {exc}") from exc
        except (psycopg.Error, PoolTimeout) as exc:
            raise StorageError(f"postgresql error in schema `{self.url.schema}`: {exc}") from exc

    def query(self, statement: str, params: Params = ()) -> list[Any]:
        """Run one read-only statement and return its rows."""
        with self.transaction(write=False) as tx:
            return tx.execute(statement, params).fetchall()

    def close(self) -> None:
        """Close the pool."""
        self._pool.close()


def open_database(url: StorageUrl) -> SqliteDatabase | PostgresDatabase:
    """Open the database a storage url names."""
    if isinstance(url, SqliteUrl):
        return SqliteDatabase(url)
    return PostgresDatabase(url)


def drop_schema(url: PostgresUrl) -> None:
    """Drop a PostgreSQL schema and everything in it (tests and teardown only)."""
    try:
        with psycopg.connect(url.dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(url.schema))
            )
    except psycopg.Error as exc:
        raise StorageError(f"cannot drop schema `{url.schema}`: {exc}") from exc


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
