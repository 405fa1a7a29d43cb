"""Storage urls, versioned migrations and group commit."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from domicile.errors import ConfigError, MigrationError
from domicile.storage.database import SqliteDatabase
from domicile.storage.group_commit import GroupCommit
from domicile.storage.migrations import migrate
from domicile.storage.url import PostgresUrl, SqliteUrl, parse_storage_url, with_schema


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///tmp/a.db", "/tmp/a.db"),
        ("sqlite:////tmp/a.db", "/tmp/a.db"),
        ("sqlite:rel/a.db", "rel/a.db"),
    ],
)
def test_sqlite_urls(url: str, path: str) -> None:
    assert parse_storage_url(url) == SqliteUrl(Path(path))


def test_postgres_urls_carry_their_schema() -> None:
    url = parse_storage_url("postgresql://u@h:5432/db?schema=p_eu&sslmode=disable")
    assert url == PostgresUrl("postgresql://u@h:5432/db?sslmode=disable", "p_eu")
    assert with_schema(url, "p_us") == PostgresUrl(url.dsn, "p_us")  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "url",
    [
        "mysql://x/y",
        "sqlite://host/x.db",
        "sqlite:",
        "postgresql://h/db?schema=Bad-Name",
        "postgresql://h/db?schema=x;drop",
    ],
)
def test_bad_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError):
        parse_storage_url(url)


def test_migrations_apply_once_and_refuse_a_newer_schema(tmp_path: Path) -> None:
    db = SqliteDatabase(SqliteUrl(tmp_path / "v.db"))
    assert migrate(db, "vault", "domicile.vault") == 1
    assert migrate(db, "vault", "domicile.vault") == 1  # idempotent
    with db.transaction() as tx:
        tx.execute("INSERT INTO schema_migrations VALUES ('vault', 99, '0099_future.sql')")
    with pytest.raises(MigrationError, match="newer than this code"):
        migrate(db, "vault", "domicile.vault")
    db.close()


def test_group_commit_batches_callers_and_reports_failures() -> None:
    batches: list[list[int]] = []
    written: list[int] = []
    gate = threading.Event()

    def write(items: list[int]) -> int:
        gate.wait(5)
        if 13 in items:
            raise ValueError("unlucky")
        batches.append(items)
        first = len(written)
        written.extend(items)
        return first

    commit: GroupCommit[int] = GroupCommit(write)
    results: dict[int, int | str] = {}

    def caller(n: int) -> None:
        try:
            results[n] = commit.submit([n])
        except ValueError as exc:
            results[n] = str(exc)

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(12)]
    for t in threads:
        t.start()
    gate.set()
    for t in threads:
        t.join()
    assert sorted(written) == list(range(12))
    assert len(batches) < 12  # callers shared writes
    assert all(written[results[n]] == n for n in range(12))  # type: ignore[index]
    with pytest.raises(ValueError, match="unlucky"):
        commit.submit([13])
