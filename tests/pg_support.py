"""PostgreSQL helpers for tests: what a server restart does to the connections it had."""

from __future__ import annotations

from collections.abc import Iterable

import psycopg


def terminate_backends(dsn: str, pids: Iterable[int]) -> None:
    """End these server processes, as a restart or a failover of the server does to every
    connection it had; return once they are gone (the clients learn it on their next use)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for pid in pids:
            conn.execute("SELECT pg_terminate_backend(%s, 10000)", (pid,))
