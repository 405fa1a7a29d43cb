"""The running threshold counts agree with a plain count over the window, whatever happens:
repeats, moments out of order, blocks, windows rolling, pruning, chunks that overlap."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from domicile.storage.database import Database
from domicile.transfers import ThresholdConfig, ThresholdCounter

T0 = datetime(2030, 1, 1, tzinfo=UTC)
KEY = b"\x09" * 32
CLASS = "personal_identifiers"
WINDOW = timedelta(days=10)


@pytest.fixture
def db(database: Database) -> Database:
    """The backend under test (tests/conftest.py)."""
    return database


def _counter(db: Database, limit: int) -> ThresholdCounter:
    config = ThresholdConfig(
        limits={CLASS: limit}, field_classes={"email": CLASS}, warn_fraction=0.5, window=WINDOW
    )
    return ThresholdCounter(db, KEY, config)


def _in_window(last: dict[str, datetime], at: datetime) -> set[str]:
    cutoff = int((at - WINDOW).timestamp())
    return {s for s, t in last.items() if int(t.timestamp()) > cutoff}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_running_count_matches_a_count_over_the_window(db: Database, seed: int) -> None:
    rng = random.Random(seed)
    limit = 40
    counter = _counter(db, limit)
    last: dict[str, datetime] = {}  # the model: subject -> last time counted
    clock = T0
    for step in range(120):
        clock += timedelta(hours=rng.choice([0, 1, 7, 30, 100]))
        # Now and then a moment from the past: another gateway's clock, or a late caller.
        at = clock - timedelta(hours=rng.choice([0, 0, 0, 2, 60])) if step % 5 == 0 else clock
        ids = [f"s{rng.randrange(80)}" for _ in range(rng.randrange(1, 12))]
        before = _in_window(last, at)
        expected_after = len(before | set(ids))
        status = counter.check_and_count(
            destination_country="US", fields={"email": "pseudonymise"}, subject_ids=ids, at=at
        )
        (c,) = status.counters
        assert (c.before, c.after) == (len(before), expected_after), step
        assert status.counted == (expected_after <= limit)
        if status.counted:
            for s in ids:
                last[s] = max(last.get(s, at), at)
        if step % 17 == 16:
            counter.prune(clock)
            cutoff = int((clock - WINDOW).timestamp())
            last = {s: t for s, t in last.items() if int(t.timestamp()) > cutoff}
        assert counter.count("country:US", CLASS, at) == len(_in_window(last, at))


def test_chunks_that_repeat_a_ref_count_it_once(db: Database) -> None:
    counter = _counter(db, 100)
    refs = [counter.subject_ref(f"s{i}") for i in range(10)]
    status = counter.check_and_count_refs(
        destination_country="US", fields={"email": "pseudonymise"},
        ref_chunks=[refs[:6], refs[4:], refs[:2]], at=T0,
    )  # fmt: skip
    assert status.counted
    assert status.counters[0].after == 10
    assert counter.count("country:US", CLASS, T0) == 10


def test_a_block_in_a_late_chunk_counts_nothing(db: Database) -> None:
    counter = _counter(db, 5)
    refs = [counter.subject_ref(f"s{i}") for i in range(8)]
    status = counter.check_and_count_refs(
        destination_country="US", fields={"email": "pseudonymise"},
        ref_chunks=iter([refs[:3], refs[3:]]), at=T0,
    )  # fmt: skip
    assert not status.counted
    assert status.blocked[0].after == 8
    assert counter.count("country:US", CLASS, T0) == 0
    assert db.query("SELECT COUNT(*) FROM transfer_buckets")[0][0] == 0


def test_refs_that_left_the_window_are_pruned_once_an_hour(db: Database) -> None:
    counter = _counter(db, 100)
    now = datetime.now(UTC)
    old = now - WINDOW - timedelta(days=5)

    def send(names: list[str], at: datetime) -> None:
        status = counter.check_and_count(
            destination_country="US", fields={"email": "pseudonymise"}, subject_ids=names, at=at
        )
        assert status.counted

    send(["a", "b"], old)  # the first check after start prunes: these are already out
    assert db.query("SELECT COUNT(*) FROM transfer_subjects")[0][0] == 0
    assert counter.count("country:US", CLASS, now) == 0
    send(["c"], now)
    send(["d"], old)  # within the hour: no prune, the row stays until the next one
    assert db.query("SELECT COUNT(*) FROM transfer_subjects")[0][0] == 2
    assert counter.count("country:US", CLASS, now) == 1


def test_a_chunk_larger_than_one_lookup_counts_each_ref_once(db: Database) -> None:
    """An export hands the counter chunks of tens of thousands of refs; the lookup of
    those already counted is split, and none is counted twice or missed."""
    counter = _counter(db, 100_000)
    fields = {"email": "pseudonymise"}
    first = [counter.subject_ref(f"s{i}") for i in range(30_000)]
    assert counter.check_and_count_refs(
        destination_country="US", fields=fields, ref_chunks=[first], at=T0
    ).counted
    later = T0 + timedelta(hours=1)
    # 70,000 refs: more parameters than one PostgreSQL statement takes (65,535), or a
    # SQLite one as built by default (32,766); 10,000 seen before, 60,000 new.
    again = [counter.subject_ref(f"s{i}") for i in range(20_000, 90_000)]
    status = counter.check_and_count_refs(
        destination_country="US", fields=fields, ref_chunks=[again], at=later
    )
    (c,) = status.counters
    assert (c.before, c.after, status.new_subjects) == (30_000, 90_000, 60_000)
    assert counter.count("country:US", CLASS, later) == 90_000
    assert db.query("SELECT COUNT(*) FROM transfer_subjects")[0][0] == 90_000
