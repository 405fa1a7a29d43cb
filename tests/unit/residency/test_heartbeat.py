"""The reservation heartbeat touches what registrations in flight hold, and only that."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from domicile.residency import heartbeat as heartbeat_module
from domicile.residency.directory import SubjectDirectory
from domicile.residency.heartbeat import ReservationHeartbeat
from domicile.storage.database import Database


def _wait_for(condition: Callable[[], object], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_a_heartbeat_touches_what_is_kept_until_the_block_ends(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = SubjectDirectory(database)
    first, second = "a" * 32, "b" * 32
    directory.reserve([(first, "eu-ie"), (second, "us")])
    touched: list[list[str]] = []
    touch = directory.touch

    def recording(ids: list[str]) -> int:
        touched.append(sorted(ids))
        return touch(ids)

    monkeypatch.setattr(directory, "touch", recording)
    heartbeat = ReservationHeartbeat(directory, 0.01)
    try:
        with heartbeat.keep([first]), heartbeat.keep([second]):
            _wait_for(lambda: touched)
        beats = len(touched)
        time.sleep(0.1)
        assert len(touched) <= beats + 1  # a beat may have taken the ids just before the end
    finally:
        heartbeat.stop()
    assert [first, second] in touched  # the first beat may come before the second keep
    stopped_at = len(touched)
    with heartbeat.keep([first]):  # after stop: no beats, and the block still runs
        time.sleep(0.05)
    assert len(touched) == stopped_at


def test_no_window_means_no_beats(database: Database) -> None:
    directory = SubjectDirectory(database)
    heartbeat = ReservationHeartbeat.for_window(directory, 0)
    assert heartbeat.interval == 0
    with heartbeat.keep(["a" * 32]):
        pass
    heartbeat.stop()


def test_a_long_window_still_beats_often_enough_for_a_shorter_one(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process with an hour's window keeps its registrations fresh for a process on
    the same directory whose window is much shorter (scaled down: beats capped at
    0.05 s, the other window 0.4 s)."""
    monkeypatch.setattr(heartbeat_module, "MAX_BEAT_INTERVAL", 0.05)
    directory = SubjectDirectory(database)
    held = "c" * 32
    directory.reserve([(held, "eu-ie")])
    heartbeat = ReservationHeartbeat.for_window(directory, 3600)
    assert heartbeat.interval == 0.05
    seen_idle = []
    try:
        with heartbeat.keep([held]):
            deadline = time.monotonic() + 1.2
            while time.monotonic() < deadline:
                since = (datetime.now(UTC) - timedelta(seconds=0.4)).isoformat(
                    timespec="microseconds"
                )
                seen_idle += [e.id for e in directory.pending(since)]
                time.sleep(0.05)
    finally:
        heartbeat.stop()
    assert held not in seen_idle
