"""The PostgreSQL `Database`: a schema reached through a connection pool (psycopg).

Its own module so that a process that never talks to PostgreSQL (a migration's preparing
processes, an export's workers) does not import psycopg: `open_database` imports it only
for a PostgreSQL url.

A pooled connection can be dead without knowing it: after a restart or a failover of
the server (or an administrator's `pg_terminate_backend`), every idle connection of the
pool fails on its next use. So the first use of a connection is where such a loss is
caught: a read (`query`, read-only by contract) or the BEGIN of a transaction block.
Nothing of the caller's has taken effect there, so the dead connection is dropped, the
pool is checked for others like it, and the work starts once more on a fresh
connection. A connection lost later, inside a block, fails that block (StorageError):
whether it committed is not known there, so it is not run twice.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

from domicile.errors import Conflict, StorageError
from domicile.storage.database import Cursor, Dialect, Params, Tx
from domicile.storage.url import PostgresUrl

log = logging.getLogger("domicile.storage")

CONNECTION_WAIT = 10.0
"""Seconds a caller waits for a pooled connection before its request fails (503). The
pool's default, 30 s, held a worker thread of the API that long for every request while
the server was down, and outlasted the timeouts of most clients and load balancers."""
CONNECT_TIMEOUT = 5
"""Seconds one attempt to connect may take (libpq `connect_timeout`, unless the url sets
it): without it, a server that drops packets holds an attempt until TCP gives up."""
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

    def __init__(self, url: PostgresUrl) -> None:
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
        kwargs: dict[str, Any] = {"options": f"-c search_path={url.schema}", "autocommit": True}
        if "connect_timeout" not in conninfo_to_dict(url.dsn):
            kwargs["connect_timeout"] = CONNECT_TIMEOUT
        self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            url.dsn,
            min_size=1,
            max_size=url.pool_size,
            # Autocommit: a read is one round trip (no BEGIN and COMMIT around it), and
            # `transaction` opens a transaction block of its own for writes.
            kwargs=kwargs,
            timeout=CONNECTION_WAIT,
            open=True,
        )

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[Tx]:
        """Run a block in one transaction on a pooled connection."""
        del write  # PostgreSQL takes row locks as the statements need them.
        try:
            with self._begun() as conn:
                yield _PgTx(conn)
        except psycopg.errors.IntegrityError as exc:
            raise Conflict(f"constraint violated in schema `{self.url.schema}`: {exc}") from exc
        except (psycopg.Error, PoolTimeout) as exc:
            raise StorageError(f"postgresql error in schema `{self.url.schema}`: {exc}") from exc

    @contextmanager
    def _begun(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection inside a transaction block, begun on a live connection (see
        the module's docstring: a connection found dead at BEGIN is replaced)."""
        for attempt in (1, 2):
            with ExitStack() as held:
                conn = held.enter_context(self._pool.connection())
                try:
                    held.enter_context(conn.transaction())  # sends BEGIN: the first use
                except psycopg.OperationalError:
                    if attempt == 2 or not conn.broken:
                        raise
                else:
                    yield conn
                    return
            self._drop_dead_connections()

    def query(self, statement: str, params: Params = ()) -> list[Any]:
        """Run one read-only statement on its own (autocommit: one round trip) and return
        its rows; a statement sees one snapshot, so a single read needs no block."""
        try:
            for attempt in (1, 2):
                with self._pool.connection() as conn:
                    try:
                        return _PgTx(conn).execute(statement, params).fetchall()
                    except psycopg.OperationalError:
                        # Read-only, so safe to run again when the connection was dead.
                        if attempt == 2 or not conn.broken:
                            raise
                self._drop_dead_connections()
        except (psycopg.Error, PoolTimeout) as exc:
            raise StorageError(f"postgresql error in schema `{self.url.schema}`: {exc}") from exc
        raise AssertionError("unreachable: the second attempt returns or raises")

    def _drop_dead_connections(self) -> None:
        """After a lost connection: test the idle ones and replace those that are dead
        too, so that one restart of the server costs one retry, not one per connection."""
        log.warning(
            "a connection to schema `%s` was lost (server restarted?); checking the pool",
            self.url.schema,
        )
        self._pool.check()

    @property
    def pool_max_size(self) -> int:
        """The most connections the pool holds (the url's `pool_size`)."""
        return self._pool.max_size

    def close(self) -> None:
        """Close the pool."""
        self._pool.close()


def drop_schema(url: PostgresUrl) -> None:
    """Drop a PostgreSQL schema and everything in it (tests and teardown only)."""
    try:
        with psycopg.connect(url.dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(url.schema))
            )
    except psycopg.Error as exc:
        raise StorageError(f"cannot drop schema `{url.schema}`: {exc}") from exc
