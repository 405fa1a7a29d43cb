"""The monitor's state backends: what a long-running monitor meets in production."""

from __future__ import annotations

import pytest

from domicile.errors import StorageError
from domicile.monitor.backend import Backend, open_backend
from pg_support import terminate_backends

DDL = "CREATE TABLE IF NOT EXISTS seen (id INTEGER PRIMARY KEY, what TEXT NOT NULL);"


def _backend_pid(backend: Backend) -> int:
    return int(backend.query("SELECT pg_backend_pid()")[0][0])


@pytest.mark.postgres
def test_the_postgresql_state_outlives_a_restart_of_its_server(pg_dsn: str, pg_prefix: str) -> None:
    """The server drops the monitor's connection (a restart, a failover): the next read
    and the next transaction connect again instead of failing every round from then on."""
    backend = open_backend(f"{pg_dsn}?schema={pg_prefix}_m", DDL)
    try:
        with backend.transaction() as conn:
            conn.execute("INSERT INTO seen (id, what) VALUES (?, ?)", (1, "checkpoint"))
        terminate_backends(pg_dsn, [_backend_pid(backend)])
        assert backend.query("SELECT what FROM seen") == [("checkpoint",)]
        terminate_backends(pg_dsn, [_backend_pid(backend)])
        with backend.transaction() as conn:
            conn.execute("INSERT INTO seen (id, what) VALUES (?, ?)", (2, "cosignature"))
        assert backend.query("SELECT count(*) FROM seen") == [(2,)]
    finally:
        backend.close()


@pytest.mark.postgres
def test_a_lost_transaction_fails_as_a_storage_error_and_the_next_one_connects_again(
    pg_dsn: str, pg_prefix: str
) -> None:
    backend = open_backend(f"{pg_dsn}?schema={pg_prefix}_m", DDL)

    def lost() -> None:
        with backend.transaction() as conn:
            conn.execute("INSERT INTO seen (id, what) VALUES (?, ?)", (1, "lost"))
            (pid,) = conn.execute("SELECT pg_backend_pid()").fetchone()
            terminate_backends(pg_dsn, [int(pid)])
            conn.execute("INSERT INTO seen (id, what) VALUES (?, ?)", (2, "lost"))

    try:
        with pytest.raises(StorageError):
            lost()
        with backend.transaction() as conn:
            conn.execute("INSERT INTO seen (id, what) VALUES (?, ?)", (3, "kept"))
        assert backend.query("SELECT id FROM seen") == [(3,)]
    finally:
        backend.close()
