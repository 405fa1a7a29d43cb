"""Threshold alerts over stored facts: denied spikes per minute, bulk access per hour.

A minute or an hour that began in an earlier round counts the facts of that round too.
"""

from __future__ import annotations

from pathlib import Path

from domicile.monitor.state import FACT_COLUMNS, MonitorState
from domicile.monitor.thresholds import Thresholds, threshold_alerts

ORIGIN = "gw/log/eu-ie"


def _facts(state: MonitorState, rows: list[tuple[str, str, str, str | None]], start: int) -> int:
    """Store decision facts (time, result, principal, subject_ref) from index `start`."""
    with state.transaction() as db:
        db.executemany(
            f"INSERT INTO facts ({FACT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (ORIGIN, start + i, time, "decision", result, "read", principal, "E", "support",
                 f"d{start + i}", ref, None)
                for i, (time, result, principal, ref) in enumerate(rows)
            ],
        )  # fmt: skip
    return start + len(rows)


def test_denied_spikes_count_the_whole_minute(tmp_path: Path) -> None:
    state = MonitorState(tmp_path / "m.db")
    limits = Thresholds(denied_per_minute=20, subjects_per_hour=1000)
    end = _facts(state, [("2026-11-23T10:00:05.1Z", "deny", "p", None)] * 15, 0)
    assert threshold_alerts(state, ORIGIN, 0, end, limits) == []
    first = end
    end = _facts(state, [("2026-11-23T10:00:40.0Z", "deny", "p", None)] * 10
                 + [("2026-11-23T10:01:00.0Z", "deny", "p", None)] * 5, first)  # fmt: skip
    (alert,) = threshold_alerts(state, ORIGIN, first, end, limits)
    assert (alert.kind, alert.evidence["minute"], alert.evidence["denied"]) == (
        "denied-spike",
        "2026-11-23T10:00",
        25,
    )
    state.close()


def test_bulk_access_counts_distinct_subjects_per_principal_and_hour(tmp_path: Path) -> None:
    state = MonitorState(tmp_path / "m.db")
    limits = Thresholds(denied_per_minute=1000, subjects_per_hour=5)
    rows = [("2026-11-23T10:10:00Z", "allow", "bulk", f"r{i % 4}") for i in range(12)]
    end = _facts(state, rows, 0)  # 4 distinct subjects so far
    assert threshold_alerts(state, ORIGIN, 0, end, limits) == []
    first = end
    rows = [("2026-11-23T10:50:00Z", "allow", "bulk", f"r{i}") for i in range(3, 7)]
    rows += [("2026-11-23T10:50:00Z", "allow", "calm", f"r{i}") for i in range(5)]
    rows += [("2026-11-23T10:50:00Z", "deny", "calm", f"x{i}") for i in range(9)]
    end = _facts(state, rows, first)
    (alert,) = threshold_alerts(state, ORIGIN, first, end, limits)
    assert alert.kind == "bulk-access"
    assert alert.evidence == {"principal": "bulk", "hour": "2026-11-23T10", "subjects": 7}
    state.close()


def test_an_hour_that_began_long_before_the_round_is_counted_whole(tmp_path: Path) -> None:
    state = MonitorState(tmp_path / "m.db")
    limits = Thresholds(denied_per_minute=10**6, subjects_per_hour=5)
    end = _facts(state, [("2026-11-23T09:59:59Z", "allow", "bulk", f"old{i}") for i in range(9)], 0)
    end = _facts(state, [("2026-11-23T10:00:01Z", "allow", "bulk", f"r{i}") for i in range(4)], end)
    filler = [("2026-11-23T10:20:00Z", "allow", "other", "z")] * 25_000  # past SKEW_MARGIN
    first = end = _facts(state, filler, end)
    end = _facts(
        state, [("2026-11-23T10:59:00Z", "allow", "bulk", f"r{i}") for i in range(3, 6)], first
    )
    (alert,) = threshold_alerts(state, ORIGIN, first, end, limits)
    assert alert.evidence == {"principal": "bulk", "hour": "2026-11-23T10", "subjects": 6}
    state.close()


def test_a_minute_over_its_limit_is_judged_by_the_round_that_touches_it(tmp_path: Path) -> None:
    state = MonitorState(tmp_path / "m.db")
    limits = Thresholds(denied_per_minute=3, subjects_per_hour=1000)
    end = _facts(state, [("2026-11-23T10:00:05Z", "deny", "p", None)] * 5, 0)
    assert [a.evidence["minute"] for a in threshold_alerts(state, ORIGIN, 0, end, limits)] == [
        "2026-11-23T10:00"
    ]
    first = end
    end = _facts(state, [("2026-11-23T10:01:05Z", "deny", "p", None)] * 2, first)
    assert threshold_alerts(state, ORIGIN, first, end, limits) == []  # 10:00 was judged
    first = end
    end = _facts(state, [("2026-11-23T10:01:50Z", "deny", "p", None)] * 2, first)
    (alert,) = threshold_alerts(state, ORIGIN, first, end, limits)
    assert alert.evidence == {"minute": "2026-11-23T10:01", "denied": 4, "limit": 3}
    state.close()
