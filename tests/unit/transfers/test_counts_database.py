"""The threshold counters' own database: what an earlier version counted in the control
database is carried over once on start, and counting a transfer never holds the lock
that registrations need (on SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

from domicile.residency.topology import load_topology
from domicile.runtime import control_storage, open_pet_keys, open_runtime, thresholds_storage
from domicile.settings import Settings
from domicile.storage.database import Database, open_database
from domicile.storage.migrations import _statements, load_migrations
from domicile.transfers.counts.legacy import move_legacy_counts
from domicile.transfers.thresholds import REF_DOMAIN, ThresholdConfig, ThresholdCounter

KEY = bytes(range(32))
FIELDS = {"email": "pseudonymise"}
CONFIG = ThresholdConfig(
    limits={"personal_identifiers": 1000}, field_classes={"email": "personal_identifiers"}
)
T0 = datetime(2026, 6, 1, tzinfo=UTC)
TABLES = ("transfer_counters", "transfer_buckets", "transfer_subjects")


def _old_layout(settings: Settings, scratch: Database) -> int:
    """A control database as the version before this one left it: the `transfers`
    component at version 2, its counter tables holding real counts (made by a counter
    on `scratch` and copied in). Returns the subjects counted."""
    region = load_topology(None).regions["eu-ie"]  # refs keyed as that version keyed them
    key = open_pet_keys(region, settings).pseudonym_key(REF_DOMAIN)
    counter = ThresholdCounter(scratch, key, CONFIG)
    counter.check_and_count(destination_country="US", fields=FIELDS,
                            subject_ids=[f"s{i}" for i in range(150)], at=T0)  # fmt: skip
    counter.check_and_count(destination_country="CN", fields=FIELDS,
                            subject_ids=[f"s{i}" for i in range(100, 130)], at=T0)  # fmt: skip
    control = open_database(control_storage(settings))
    try:
        with control.transaction() as tx:
            tx.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (component TEXT NOT NULL,"
                " version INTEGER NOT NULL, name TEXT NOT NULL, PRIMARY KEY (component, version))"
            )
            for script in load_migrations("domicile.transfers", control.dialect)[:2]:
                for statement in _statements(script.sql):
                    tx.execute(statement)
                tx.execute("INSERT INTO schema_migrations VALUES ('transfers', ?, ?)",
                           (script.version, script.name))  # fmt: skip
            for table in TABLES:
                rows = scratch.query(f"SELECT * FROM {table}")
                marks = ", ".join("?" * len(rows[0]))
                tx.executemany(f"INSERT INTO {table} VALUES ({marks})", [tuple(r) for r in rows])
    finally:
        control.close()
    return 180


def _tables(db: Database) -> set[str]:
    if db.dialect == "postgres":
        rows = db.query("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
    else:
        rows = db.query("SELECT name FROM sqlite_master WHERE type = 'table'")
    return {str(r[0]) for r in rows}


def test_counts_of_an_earlier_version_are_carried_over_once(
    settings: Settings, database: Database
) -> None:
    counted = _old_layout(settings, database)
    runtime = open_runtime(settings)
    try:
        counter = runtime.transfers.counters["eu-ie"]
        assert counter.db.url == thresholds_storage(settings)
        # Carried over: the counts, and the refs (the same subjects again are not new).
        assert counter.count("country:US", "personal_identifiers", at=T0) == 150
        assert counter.count("country:CN", "personal_identifiers", at=T0) == 30
        again = counter.check_and_count(destination_country="US", fields=FIELDS,
                                        subject_ids=["s0", "s149", "new"], at=T0)  # fmt: skip
        assert (again.counters[0].before, again.counters[0].after) == (150, 151)
        control = runtime.directory.db
        assert not {t for t in _tables(control) if "transfer_subjects" in t}
        assert counter.db.query("SELECT subjects FROM transfer_counts_moved") == [(counted,)]
    finally:
        runtime.close()
    runtime = open_runtime(settings)  # a second start copies nothing again
    try:
        counter = runtime.transfers.counters["eu-ie"]
        assert counter.count("country:US", "personal_identifiers", at=T0) == 151
        assert len(counter.db.query("SELECT * FROM transfer_counts_moved")) == 1
    finally:
        runtime.close()


def test_a_move_recorded_before_a_crash_is_not_copied_twice(
    settings: Settings, database: Database
) -> None:
    """Copied and recorded, then a crash before the legacy tables were dropped: the next
    start only drops them."""
    _old_layout(settings, database)
    control = open_database(control_storage(settings))
    counts = open_database(thresholds_storage(settings))
    try:
        runtime = open_runtime(settings)
        runtime.close()
        with control.transaction() as tx:  # the tables as the crash left them
            tx.execute("CREATE TABLE legacy_transfer_subjects (scope TEXT, data_class TEXT,"
                       " subject_ref TEXT, last_at BIGINT)")  # fmt: skip
            tx.execute("INSERT INTO legacy_transfer_subjects VALUES ('country:US',"
                       " 'personal_identifiers', 'ref', 1)")  # fmt: skip
        assert move_legacy_counts(counts, control) == 0
        assert "legacy_transfer_subjects" not in _tables(control)
        counter = ThresholdCounter(counts, KEY, CONFIG)
        assert counter.count("country:US", "personal_identifiers", at=T0) == 150
    finally:
        control.close()
        counts.close()


def test_a_registration_goes_through_while_an_export_is_being_counted(
    settings: Settings,
) -> None:
    """An export's refs are counted in one long write transaction; it holds the counters'
    database only, so registrations (the control database) carry on meanwhile."""
    runtime = open_runtime(settings)
    try:
        token = runtime.principals.add("svc", "Shop EU Ltd", "IE", {"service"})
        principal = runtime.gateway.authenticate(token)
        counter = runtime.transfers.counters["eu-ie"]
        counting, release = threading.Event(), threading.Event()

        def chunks() -> Iterator[Sequence[str]]:
            yield [counter.subject_ref(f"s{i}") for i in range(100)]
            counting.set()  # the first chunk is written, the transaction is open
            release.wait(60)
            yield [counter.subject_ref(f"s{i}") for i in range(100, 200)]

        results = []
        export = threading.Thread(target=lambda: results.append(counter.check_and_count_refs(
            destination_country="US", fields=FIELDS, ref_chunks=chunks())))  # fmt: skip
        export.start()
        assert counting.wait(30)
        placed = runtime.gateway.register(principal, "IE", {"email": "a@example.org"})
        assert export.is_alive()  # registered while the counting transaction was open
        release.set()
        export.join(30)
        assert runtime.directory.lookup_many([placed[0]])
        assert (results[0].counted, results[0].new_subjects) == (True, 200)
    finally:
        runtime.close()
