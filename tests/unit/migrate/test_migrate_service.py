"""End to end through the service layer, on SQLite and on PostgreSQL (source and destination)."""

from __future__ import annotations

from pathlib import Path

import pytest

from domicile.catalog.catalog import load_catalog
from domicile.errors import IntegrityError, StorageError
from domicile.ledger.entry import decode_entry
from domicile.migrate.demo_source import create_demo_source, demo_rows
from domicile.migrate.mapping import parse_mapping
from domicile.migrate.relocator import Relocator
from domicile.migrate.service import migration_status, run_migration, verify_migration
from domicile.migrate.source import LegacySource
from domicile.migrate.state import Batch, ProgressStore
from domicile.runtime import control_storage, open_runtime
from domicile.settings import Settings
from domicile.storage.database import ROWS_PER_INSERT, open_database

ROWS = 600


def _source_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'legacy.db'}"
    prefix = request.getfixturevalue("pg_prefix")
    return f"{request.getfixturevalue('pg_dsn')}?schema={prefix}_legacy"


@pytest.fixture
def legacy(
    settings: Settings, backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> LegacySource:
    url = _source_url(backend, tmp_path, request)
    mapping = parse_mapping(create_demo_source(url, ROWS, "singapore", seed=5), load_catalog())
    source = LegacySource(url, mapping)
    yield source  # type: ignore[misc]
    source.close()


def test_run_moves_everything_valid_and_verifies(settings: Settings, legacy: LegacySource) -> None:
    report, cert = run_migration(settings, legacy, batch_size=97)
    assert report.moved + report.quarantined == ROWS
    assert report.moved > 500
    assert report.quarantined > 0
    assert legacy.count_live() == report.quarantined
    done = verify_migration(settings, legacy, None, None, deep=True)
    assert done.moved == report.moved
    assert done.live_rows == report.quarantined
    status = migration_status(settings, legacy)
    assert status["moved"] == report.moved
    assert status["in_flight"] == 0

    again, _ = run_migration(settings, legacy, batch_size=97)
    assert again.moved == 0
    assert again.quarantined == report.quarantined
    verify_migration(settings, legacy, cert, None)


def test_moved_subjects_read_like_registered_ones(settings: Settings, legacy: LegacySource) -> None:
    run_migration(settings, legacy, batch_size=200)
    rt = open_runtime(settings)
    try:
        progress = ProgressStore(rt.directory.db, legacy.source_id)
        batch = next(b for b in progress.batches(state="removed") if b.region == "eu-ie")
        row = progress.rows(batch.batch_id)[0]
        original = next(r for r in demo_rows(ROWS, 5) if f"i:{r[0]}" == row.key)
        rt.principals.add("svc-eu", "Domicile EU Ltd", "IE", {"service"})
        principal = rt.principals.authenticate(rt.principals.add("svc-ie", "EU", "IE", {"service"}))
        view = rt.gateway.read(principal, row.subject_id, ["email", "full_name"], "support")
        assert view.fields == {"email": original[3], "full_name": original[2]}
        assert rt.directory.lookup(row.subject_id).home_region == "eu-ie"
        log = rt.logs["eu-ie"]
        entries = [log.entry(i) for i in range(log.size)]
    finally:
        rt.close()
    batches = [decode_entry(e) for e in entries if b"migration-batch" in e]
    assert batches
    assert all(b["principal"] == {"id": "domicile-migrate", "entity": "operator"} for b in batches)
    # No personal data in the ledger or the certificate.
    cert = next((settings.data_dir / "migrate").glob("*.cert")).read_text()
    for person in list(demo_rows(ROWS, 5))[:50]:
        for value in (person[2], person[3], person[4]):
            assert all(value.encode() not in e for e in entries)
            assert value not in cert


def test_verify_catches_a_row_back_at_the_source(settings: Settings, legacy: LegacySource) -> None:
    run_migration(settings, legacy, batch_size=300)
    with legacy.db.transaction() as tx:
        tx.execute(
            "INSERT INTO users_sg (legacy_id, country, email) VALUES (?, ?, ?)",
            (2, "DE", "back@example.org"),
        )
    with pytest.raises(IntegrityError, match="still"):
        verify_migration(settings, legacy, None, None)


def test_verify_catches_an_altered_certificate(settings: Settings, legacy: LegacySource) -> None:
    _, cert = run_migration(settings, legacy, batch_size=300)
    text = cert.read_text()
    forged = cert.with_name("forged.cert")
    forged.write_text(text.replace("\nmoved ", "\nmoved 1", 1))
    with pytest.raises(IntegrityError):
        verify_migration(settings, legacy, forged, None)


def test_tombstone_mode_clears_values(
    settings: Settings, backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = _source_url(backend, tmp_path, request)
    text = create_demo_source(url, 200, "us", seed=9).replace(
        'on_moved = "delete"', 'on_moved = "tombstone"\ntombstone_column = "migrated_at"'
    )
    source = LegacySource(url, parse_mapping(text, load_catalog()))
    try:
        report, _ = run_migration(settings, source, batch_size=64)
        rows = source.db.query("SELECT COUNT(*) FROM users_us WHERE migrated_at IS NOT NULL"
                               " AND email IS NULL AND name IS NULL")  # fmt: skip
        assert int(rows[0][0]) == report.moved
        verify_migration(settings, source, None, None, deep=True)
    finally:
        source.close()


def _stop_at_page_two(
    settings: Settings, legacy: LegacySource, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run until page 2's finish fails: pages 2 and 3 are left `moved`, page 4 `copying`."""
    finish = Relocator._finish_page

    def failing(self: Relocator, page_no: int, batches: list[Batch], keys: list[str]) -> None:
        if page_no == 2:
            raise StorageError("the disk went away")
        finish(self, page_no, batches, keys)

    monkeypatch.setattr(Relocator, "_finish_page", failing)
    with pytest.raises(StorageError, match="went away"):
        run_migration(settings, legacy, batch_size=100, preparing_process=False)


def test_pages_left_at_different_steps_are_each_recovered(
    settings: Settings, legacy: LegacySource, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pages overlap: a failing finish of page 2 surfaces while page 3 is moved and
    # page 4's intent is recorded, so three pages are left at two different steps.
    _stop_at_page_two(settings, legacy, monkeypatch)
    db = open_database(control_storage(settings))
    try:
        states = {b.page: b.state for b in ProgressStore(db, legacy.source_id).batches()}
    finally:
        db.close()
    assert states == {0: "removed", 1: "removed", 2: "moved", 3: "moved", 4: "copying"}
    monkeypatch.undo()
    report, _ = run_migration(settings, legacy, batch_size=100, preparing_process=False)
    assert report.recovered_pages == 3
    done = verify_migration(settings, legacy, None, None, deep=True)
    assert done.live_rows == legacy.count_live()
    rt = open_runtime(settings)
    try:
        assert not rt.directory.pending()
        assert sum(rt.directory.counts().values()) == done.moved
        assert sum(r.vault.count() for r in rt.gateway.regions.values()) == done.moved
    finally:
        rt.close()


def test_a_gateway_starting_mid_migration_leaves_its_reservations_alone(
    settings: Settings, legacy: LegacySource, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page whose intent is recorded (`copying`) holds `registering` reservations that
    belong to the migration: a gateway's start-up recovery must not undo them (the
    migration may be running in another process); the migration's own recovery does."""
    _stop_at_page_two(settings, legacy, monkeypatch)
    monkeypatch.undo()
    db = open_database(control_storage(settings))
    try:
        progress = ProgressStore(db, legacy.source_id)
        copying = [b for b in progress.batches() if b.state == "copying"]
        held = {r.subject_id for b in copying for r in progress.rows(b.batch_id)}
    finally:
        db.close()
    assert held
    rt = open_runtime(settings)  # a gateway starts: it runs its own recovery
    try:
        pending = {e.id: e for e in rt.directory.pending() if e.state == "registering"}
        assert set(pending) == held
        assert {e.reserved_by for e in pending.values()} == {"migration"}
    finally:
        rt.close()
    report, _ = run_migration(settings, legacy, batch_size=100, preparing_process=False)
    assert report.recovered_pages == 3
    done = verify_migration(settings, legacy, None, None, deep=True)
    rt = open_runtime(settings)
    try:
        assert not rt.directory.pending()
        assert sum(r.vault.count() for r in rt.gateway.regions.values()) == done.moved
    finally:
        rt.close()


def test_a_row_fixed_at_the_source_leaves_the_quarantine(
    settings: Settings, legacy: LegacySource
) -> None:
    first, _ = run_migration(settings, legacy, batch_size=100, preparing_process=False)
    db = open_database(control_storage(settings))
    try:
        progress = ProgressStore(db, legacy.source_id)
        key, _ = next((k, r) for k, r in progress.quarantine() if r == "missing-country")
        with legacy.db.transaction() as tx:
            tx.execute("UPDATE users_sg SET country = 'DE' WHERE legacy_id = ?", (int(key[2:]),))
        again, _ = run_migration(settings, legacy, batch_size=100, preparing_process=False)
        assert again.moved == 1
        assert again.quarantined == first.quarantined - 1
        assert key not in dict(progress.quarantine())
        assert progress.moved_among([key]) == {key}
    finally:
        db.close()
    done = verify_migration(settings, legacy, None, None, deep=True)
    assert done.moved == first.moved + 1


def test_large_pages_use_multi_row_statements_and_verify(
    settings: Settings, legacy: LegacySource
) -> None:
    # One page of every row: the eu-ie batch has more rows than one multi-row
    # statement holds (storage.database.ROWS_PER_INSERT), so full statements and the
    # rest one by one both write it.
    report, _ = run_migration(settings, legacy, batch_size=ROWS, preparing_process=False)
    assert report.per_region["eu-ie"] > ROWS_PER_INSERT
    done = verify_migration(settings, legacy, None, None, deep=True)
    assert done.moved == report.moved
    assert legacy.count_live() == report.quarantined


def test_a_copy_the_vault_does_not_hold_as_written_stops_the_run(
    settings: Settings, legacy: LegacySource, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The read-back compares what the vault holds with what was written: a vault that
    keeps one value altered stops the run before any source row is deleted."""
    from domicile.vault.store import Vault

    insert_packed = Vault.insert_packed

    def altering(self: Vault, ids: list[str], stored: list[str], version: str) -> None:
        insert_packed(self, ids, stored, version)
        altered = stored[-1].replace('":"01', '":"00', 1)
        with self.db.transaction() as tx:
            tx.execute("UPDATE subjects SET sealed = ? WHERE id = ?", (altered, ids[-1]))

    before = legacy.count_live()
    monkeypatch.setattr(Vault, "insert_packed", altering)
    with pytest.raises(IntegrityError, match="differs"):
        run_migration(settings, legacy, batch_size=97)
    assert legacy.count_live() == before
