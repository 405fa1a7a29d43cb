"""Storage urls, versioned migrations, group commit, and what loads psycopg."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from contextlib import ExitStack
from pathlib import Path

import pytest

from at_once import run_at_once
from domicile.errors import ConfigError, Conflict, MigrationError, StorageError
from domicile.storage.database import Database, SqliteDatabase, open_database
from domicile.storage.group_commit import GroupCommit
from domicile.storage.migrations import load_migrations, migrate
from domicile.storage.url import PostgresUrl, SqliteUrl, parse_storage_url, with_schema
from pg_support import terminate_backends


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


def test_a_postgres_url_may_size_its_pool_and_keeps_the_size_for_every_schema() -> None:
    url = parse_storage_url("postgresql://u@h/db?schema=p&pool_size=4&sslmode=disable")
    assert url == PostgresUrl("postgresql://u@h/db?sslmode=disable", "p", pool_size=4)
    assert with_schema(url, "p_us") == PostgresUrl(url.dsn, "p_us", pool_size=4)  # type: ignore[union-attr]
    assert parse_storage_url(str(url)) == url
    assert parse_storage_url("postgresql://u@h/db").pool_size == 16  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "url",
    [
        "mysql://x/y",
        "sqlite://host/x.db",
        "sqlite:",
        "postgresql://h/db?schema=Bad-Name",
        "postgresql://h/db?schema=x;drop",
        "postgresql://h/db?pool_size=0",
        "postgresql://h/db?pool_size=-1",
        "postgresql://h/db?pool_size=many",
    ],
)
def test_bad_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError):
        parse_storage_url(url)


def test_migrations_apply_once_and_refuse_a_newer_schema(tmp_path: Path) -> None:
    db = SqliteDatabase(SqliteUrl(tmp_path / "v.db"))
    latest = len(load_migrations("domicile.vault", "sqlite"))
    assert latest >= 2
    assert migrate(db, "vault", "domicile.vault") == latest
    assert migrate(db, "vault", "domicile.vault") == latest  # idempotent
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


def test_group_commit_serves_event_loop_callers_beside_threads() -> None:
    """Callers on an event loop share the queue and the writes with thread callers, are
    acknowledged only once written, and learn of a failed write; the loop never blocks."""
    written: list[int] = []
    gate = threading.Event()
    loop_ran_while_writing = threading.Event()

    def write(items: list[int]) -> int:
        gate.wait(5)
        if 13 in items:
            raise ValueError("unlucky")
        first = len(written)
        written.extend(items)
        return first

    commit: GroupCommit[int] = GroupCommit(write)
    results: dict[int, int] = {}

    def caller(n: int) -> None:
        results[n] = commit.submit([n])

    async def main() -> None:
        pending = [asyncio.ensure_future(commit.submit_async([n])) for n in range(100, 110)]
        await asyncio.sleep(0.05)
        # The write is held at the gate: the loop still runs, nothing is acknowledged.
        assert not any(p.done() for p in pending)
        loop_ran_while_writing.set()
        threads = [threading.Thread(target=caller, args=(n,)) for n in range(5)]
        for t in threads:
            t.start()
        gate.set()
        for n, first in zip(range(100, 110), await asyncio.gather(*pending), strict=True):
            results[n] = first
        for t in threads:
            await asyncio.to_thread(t.join)
        with pytest.raises(ValueError, match="unlucky"):
            await commit.submit_async([13])
        # A failed write does not stop the writer: the next caller is served.
        results[200] = await commit.submit_async([200])

    asyncio.run(main())
    assert loop_ran_while_writing.is_set()
    assert sorted(written) == [*range(5), *range(100, 110), 200]
    assert all(written[first] == n for n, first in results.items())


def test_the_bulk_worker_processes_do_not_load_psycopg() -> None:
    """A migration's preparing processes and an export's workers import these modules and
    never talk to PostgreSQL; psycopg would cost each of them about 25 MiB."""
    probe = (
        "import sys, domicile.migrate.feeder, domicile.gateway.export_pages;"
        " print('psycopg' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.postgres
def test_processes_starting_at_once_on_a_fresh_postgresql_schema_all_migrate(
    pg_dsn: str, pg_prefix: str
) -> None:
    """Gateways started together against a new database each migrate its schemas; none
    fails on another's half-created tables (PostgreSQL's catalog refuses the second
    CREATE TABLE of a name until the first commits, and then refuses it outright)."""
    for trial in range(6):
        url = PostgresUrl(pg_dsn, f"{pg_prefix}_{trial}")
        barrier = threading.Barrier(4)
        failures: list[BaseException] = []
        databases = [open_database(url) for _ in range(4)]

        def start(
            db: Database,
            barrier: threading.Barrier = barrier,
            failures: list[BaseException] = failures,
        ) -> None:
            barrier.wait()
            try:
                migrate(db, "ledger", "domicile.ledger")
            except BaseException as exc:  # reported below, with the trial
                failures.append(exc)

        threads = [threading.Thread(target=start, args=(db,)) for db in databases]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for db in databases:
            db.close()
        assert not failures, f"trial {trial}: {failures[0]}"
        check = open_database(url)
        try:
            applied = check.query("SELECT count(*) FROM schema_migrations")[0][0]
        finally:
            check.close()
        assert applied == len(load_migrations("domicile.ledger", "postgres"))


def test_processes_opening_one_new_sqlite_file_at_once_all_open_it(tmp_path: Path) -> None:
    """The first connections to a new file race to switch it to WAL; SQLite answers all
    but one "locked" at once, without its busy timeout, so each must wait its turn."""
    code = (
        "from pathlib import Path\n"
        "from domicile.storage.database import SqliteDatabase\n"
        "from domicile.storage.url import SqliteUrl\n"
        "db = SqliteDatabase(SqliteUrl(Path(sys.argv[1])))\n"
        "with db.transaction() as tx:\n"
        "    tx.execute('CREATE TABLE IF NOT EXISTS t (x)')\n"
        "print(db.query('PRAGMA journal_mode')[0][0])\n"
    )
    for trial in range(4):
        outputs = run_at_once(code, [str(tmp_path / f"new-{trial}.db")], processes=4)
        assert outputs == ["wal\n"] * 4, outputs


@pytest.mark.postgres
def test_a_postgresql_read_is_one_statement_and_a_transaction_is_still_one_block(
    pg_dsn: str, pg_prefix: str
) -> None:
    """`query` sends its statement alone (no BEGIN before it: its transaction starts with
    it), and `transaction` still commits all of its statements or none."""
    db = open_database(PostgresUrl(pg_dsn, pg_prefix))
    try:
        assert db.query("SELECT now() = statement_timestamp()") == [(True,)]
        with db.transaction() as tx:
            tx.execute("CREATE TABLE t (x INTEGER PRIMARY KEY)")
            (inside,) = tx.execute("SELECT now() = statement_timestamp()").fetchone()
        assert inside is False  # the block began before this statement

        def twice() -> None:
            with db.transaction() as tx:
                tx.execute("INSERT INTO t VALUES (1)")
                tx.execute("INSERT INTO t VALUES (1)")

        with pytest.raises(Conflict):
            twice()
        assert db.query("SELECT count(*) FROM t") == [(0,)]
    finally:
        db.close()


def _pooled_backends(db: Database, count: int) -> list[int]:
    """Make the pool hold `count` connections (blocks open at once take one each) and
    return their server process ids."""
    with ExitStack() as blocks:
        txs = [blocks.enter_context(db.transaction()) for _ in range(count)]
        return [int(tx.execute("SELECT pg_backend_pid()").fetchone()[0]) for tx in txs]


@pytest.mark.postgres
def test_a_postgresql_database_outlives_a_restart_of_its_server(
    pg_dsn: str, pg_prefix: str
) -> None:
    """Every pooled connection killed at once, as a restart or a failover of the server
    does: the next read and the next transaction still go through, on fresh connections."""
    db = open_database(PostgresUrl(pg_dsn, pg_prefix))
    try:
        with db.transaction() as tx:
            tx.execute("CREATE TABLE t (x INTEGER PRIMARY KEY)")
        terminate_backends(pg_dsn, _pooled_backends(db, 3))
        assert db.query("SELECT count(*) FROM t") == [(0,)]
        terminate_backends(pg_dsn, _pooled_backends(db, 3))
        with db.transaction() as tx:
            tx.execute("INSERT INTO t VALUES (1)")
        assert db.query("SELECT x FROM t") == [(1,)]
    finally:
        db.close()


@pytest.mark.postgres
def test_a_block_whose_connection_dies_inside_it_fails_once_and_is_not_run_again(
    pg_dsn: str, pg_prefix: str
) -> None:
    """Past BEGIN, whether a block took effect is not known from the client: it fails
    with a StorageError, its first statement is rolled back, and it is not retried."""
    db = open_database(PostgresUrl(pg_dsn, pg_prefix))
    runs = 0

    def block() -> None:
        nonlocal runs
        with db.transaction() as tx:
            runs += 1
            tx.execute("INSERT INTO t VALUES (1)")
            (pid,) = tx.execute("SELECT pg_backend_pid()").fetchone()
            terminate_backends(pg_dsn, [int(pid)])
            tx.execute("INSERT INTO t VALUES (2)")

    try:
        with db.transaction() as tx:
            tx.execute("CREATE TABLE t (x INTEGER PRIMARY KEY)")
        with pytest.raises(StorageError):
            block()
        assert runs == 1
        assert db.query("SELECT count(*) FROM t") == [(0,)]
    finally:
        db.close()
