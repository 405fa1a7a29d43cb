"""SIGKILL `migrate run` at random points, resume each time, and check that every legacy row
ends in exactly one home vault or in quarantine, with nothing duplicated, nothing left at
the source that should have moved, and every digest matching the vault."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from domicile.catalog.catalog import load_catalog
from domicile.migrate.demo_source import create_demo_source
from domicile.migrate.mapping import parse_mapping
from domicile.migrate.service import verify_migration
from domicile.migrate.source import LegacySource, legacy_key
from domicile.migrate.state import ProgressStore
from domicile.runtime import open_runtime
from domicile.settings import Settings
from domicile.vault.store import SubjectState

RUNNER = Path(__file__).with_name("migrate_runner.py")
ROWS = 20_000
BUDGET_SECONDS = 20
PG_ROWS = 4000


def _spawn(args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(RUNNER), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def _crash_and_resume(args: list[str], rng: random.Random) -> int:
    kills, started = 0, time.monotonic()
    while time.monotonic() - started < BUDGET_SECONDS:
        # Both ways of preparing pages: a preparing process, or the run's own process.
        mode = rng.choice(["process", "inline"])
        proc = _spawn([*args, str(rng.choice([17, 40, 101])), "-", mode])
        time.sleep(rng.uniform(0.05, 0.8))
        finished = proc.poll() is not None
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate()
        if finished:
            assert proc.returncode == 0, err
            break
        kills += 1
    final = _spawn([*args, "64"])
    out, err = final.communicate(timeout=120)
    assert final.returncode == 0, err
    assert out.splitlines()[-1].startswith("done")
    return kills


def _check(settings: Settings, source: LegacySource, rows: int = ROWS) -> None:
    verify_migration(settings, source, None, None, deep=True)  # ledger, rescan, digests
    rt = open_runtime(settings)
    try:
        progress = ProgressStore(rt.directory.db, source.source_id)
        assert not progress.unfinished()
        moved = {r.key: r for b in progress.batches(state="removed")
                 for r in progress.rows(b.batch_id)}  # fmt: skip
        quarantined = dict(progress.quarantine())
        every = {legacy_key(i) for i in range(1, rows + 1)}
        assert set(moved).isdisjoint(quarantined)
        assert set(moved) | set(quarantined) == every
        assert len({r.subject_id for r in moved.values()}) == len(moved)
        for name, region in rt.gateway.regions.items():
            expected = {r.subject_id for r in moved.values() if r.region == name}
            assert set(region.vault.iter_ids()) == expected, name  # no copy left behind
            assert region.vault.count(SubjectState.RELOCATED) == 0
        assert sum(rt.directory.counts().values()) == len(moved)
        assert not rt.directory.pending()
    finally:
        rt.close()
    assert source.count_live() == len(quarantined)
    assert not source.present(list(moved))


def test_sigkill_at_random_points_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'legacy.db'}"
    mapping_file = tmp_path / "mapping.toml"
    mapping_file.write_text(create_demo_source(url, ROWS, "singapore", seed=11))
    data_dir = tmp_path / "data"
    kills = _crash_and_resume([str(data_dir), url, str(mapping_file)], random.Random(2026))
    print(f"{kills} kills")
    assert kills >= 5
    source = LegacySource(url, parse_mapping(mapping_file.read_text(), load_catalog()))
    try:
        _check(Settings(data_dir=data_dir), source)
    finally:
        source.close()


@pytest.mark.postgres
def test_sigkill_with_postgresql_source_and_destination(
    tmp_path: Path, pg_dsn: str, pg_prefix: str
) -> None:
    url = f"{pg_dsn}?schema={pg_prefix}_legacy"
    mapping_file = tmp_path / "mapping.toml"
    mapping_file.write_text(create_demo_source(url, PG_ROWS, "us", seed=12))
    data_dir, storage = tmp_path / "data", f"{pg_dsn}?schema={pg_prefix}"
    rng = random.Random(7)
    for _ in range(6):
        proc = _spawn([str(data_dir), url, str(mapping_file), "50", storage])
        time.sleep(rng.uniform(0.2, 1.2))
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    final = _spawn([str(data_dir), url, str(mapping_file), "64", storage])
    _, err = final.communicate(timeout=120)
    assert final.returncode == 0, err
    source = LegacySource(url, parse_mapping(mapping_file.read_text(), load_catalog()))
    try:
        _check(Settings(data_dir=data_dir, storage_url=storage), source, PG_ROWS)
    finally:
        source.close()
