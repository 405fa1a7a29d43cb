"""Liveness and readiness probes, on SQLite and on PostgreSQL."""

from __future__ import annotations

import psycopg
import pytest
from fastapi.testclient import TestClient

from domicile.runtime import Runtime

PROBLEM = "application/problem+json"


def test_a_gateway_whose_stores_answer_is_live_and_ready(api: TestClient) -> None:
    assert api.get("/healthz").json() == {"status": "ok"}
    ready = api.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready"}


def test_a_store_that_fails_makes_the_gateway_unready_and_is_named(
    api: TestClient, runtime: Runtime, backend: str
) -> None:
    # On PostgreSQL a region's log and vault share its schema: both are named.
    named = "eu-no log" if backend == "sqlite" else "eu-no log, eu-no vault"
    with runtime.logs["eu-no"].db.transaction() as tx:
        tx.execute("ALTER TABLE schema_migrations RENAME TO schema_migrations_gone")
    ready = api.get("/readyz")
    assert ready.status_code == 503
    assert ready.headers["content-type"].startswith(PROBLEM)
    problem = ready.json()
    assert problem["code"] == "storage-error"
    assert problem["detail"] == f"not ready: no answer from {named}"
    assert api.get("/healthz").status_code == 200  # alive all the same
    with runtime.logs["eu-no"].db.transaction() as tx:
        tx.execute("ALTER TABLE schema_migrations_gone RENAME TO schema_migrations")
    assert api.get("/readyz").status_code == 200


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"])
def test_a_server_that_does_not_answer_in_time_makes_the_gateway_unready(
    pg_dsn: str, pg_prefix: str, api: TestClient
) -> None:
    """A schema whose server hangs (here: a lock that every read of it waits for) is
    reported once the readiness timeout has passed, not when the pool gives up."""
    with psycopg.connect(pg_dsn) as holder:
        table = f"{pg_prefix}_control.schema_migrations"
        holder.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")  # reads wait
        ready = api.get("/readyz")
        holder.rollback()
    assert ready.status_code == 503
    assert ready.json()["detail"] == "not ready: no answer from control"
    assert api.get("/readyz").status_code == 200
