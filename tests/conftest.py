"""Shared fixtures: settings on a temporary data directory, and PostgreSQL when present.

PostgreSQL tests read `DOMICILE_TEST_PG_DSN`. Without it (or without a server) they
skip with the reason — except under `CI=true`, where a missing server fails the run.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import psycopg
import pytest
from fastapi.testclient import TestClient

from domicile.api.app import create_app
from domicile.runtime import Runtime, open_runtime
from domicile.settings import Settings
from domicile.storage.database import Database, open_database
from domicile.storage.postgres import drop_schema
from domicile.storage.url import PostgresUrl, SqliteUrl, StorageUrl

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


def unavailable(what: str, reason: str) -> NoReturn:
    """Skip a test whose outside component is missing, with the reason; fail under CI."""
    if IN_CI:
        pytest.fail(f"CI needs {what}: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    """The test PostgreSQL DSN; skip (or fail under CI) without a server."""
    dsn, reason = _pg_dsn_or_reason()
    if dsn is None:
        unavailable("postgresql", reason)
    return dsn


@pytest.fixture(scope="session")
def merkle_vectors() -> Path:
    """The shared Merkle test vectors beside this checkout; skip (or fail under CI)."""
    path = SHARED / "vectors" / "merkle"
    if not path.is_dir():
        unavailable("the merkle test vectors", f"merkle test vectors not found at {path}")
    return path


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's chromium, for browser tests and PDF printing; skip (or fail under CI)."""
    path = Path(os.environ.get("DOMICILE_CHROMIUM") or "/usr/bin/chromium")
    if not path.exists():
        unavailable(
            "chromium", f"{path} is missing (Debian package `chromium`; `make test` adds it)"
        )
    return path


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
def storage_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> StorageUrl:
    """A fresh store on the backend under test: a SQLite file, or a PostgreSQL schema."""
    if backend == "sqlite":
        return SqliteUrl(tmp_path / "store.db")
    return PostgresUrl(request.getfixturevalue("pg_dsn"), request.getfixturevalue("pg_prefix"))


@pytest.fixture
def database(storage_url: StorageUrl) -> Iterator[Database]:
    """An open Database on `storage_url`, closed afterwards."""
    db = open_database(storage_url)
    yield db
    db.close()


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
