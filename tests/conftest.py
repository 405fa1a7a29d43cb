"""Shared fixtures: settings on a temporary data directory, and PostgreSQL when present.

PostgreSQL tests read `DOMICILE_TEST_PG_DSN`. Without it (or without a server) they
skip with the reason — except under `CI=true`, where a missing server fails the run.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from domicile.api.app import create_app
from domicile.runtime import Runtime, open_runtime
from domicile.settings import Settings
from domicile.storage.database import drop_schema
from domicile.storage.url import PostgresUrl

IN_CI = os.environ.get("CI") == "true"
SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def _pg_dsn_or_reason() -> tuple[str | None, str]:
    dsn = os.environ.get("DOMICILE_TEST_PG_DSN")
    if not dsn:
        return None, "DOMICILE_TEST_PG_DSN is not set"
    try:
        with psycopg.connect(dsn, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return None, f"postgresql at DOMICILE_TEST_PG_DSN is unreachable: {exc}"
    return dsn, ""


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    """The test PostgreSQL DSN; skip (or fail under CI) without a server."""
    dsn, reason = _pg_dsn_or_reason()
    if dsn is None:
        if IN_CI:
            pytest.fail(f"CI needs postgresql: {reason}")
        pytest.skip(reason)
    return dsn


@pytest.fixture
def pg_prefix(pg_dsn: str) -> Iterator[str]:
    """A unique schema prefix; every schema starting with it is dropped afterwards."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    yield prefix
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE %s",
            (prefix + "%",),
        ).fetchall()
    for (schema,) in rows:
        drop_schema(PostgresUrl(pg_dsn, schema))


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    """Run a test once on SQLite and once on PostgreSQL."""
    return str(request.param)


@pytest.fixture
def settings(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> Settings:
    """Settings on a fresh data directory, on the backend under test."""
    storage_url = None
    if backend == "postgres":
        prefix = request.getfixturevalue("pg_prefix")
        storage_url = f"{request.getfixturevalue('pg_dsn')}?schema={prefix}"
    return Settings(data_dir=tmp_path / "data", storage_url=storage_url)


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    """An open runtime (all regions, directory, principals)."""
    rt = open_runtime(settings)
    yield rt
    rt.close()


@pytest.fixture
def tokens(runtime: Runtime) -> dict[str, str]:
    """Tokens of a few principals: admin, services in several countries, a revoked one."""
    store = runtime.principals
    out = {
        "admin": store.add("admin", "operator", "IE", {"admin"}),
        "svc": store.add("svc-eu", "Domicile EU Ltd", "IE", {"service"}),
        "svc_us": store.add("svc-us", "Domicile US Inc", "US", {"service"}),
        "revoked": store.add("gone", "Domicile EU Ltd", "IE", {"service"}),
    }
    store.revoke("gone")
    return out


@pytest.fixture
def api(runtime: Runtime, settings: Settings) -> Iterator[TestClient]:
    """The HTTP API in process, on the runtime under test."""
    with TestClient(create_app(settings, runtime), raise_server_exceptions=False) as client:
        yield client
