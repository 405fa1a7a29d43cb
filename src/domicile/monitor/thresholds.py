"""Threshold alerts over stored facts: spikes of denials, bulk access by one principal."""

from __future__ import annotations

from dataclasses import dataclass

from domicile.monitor.alerts import Alert
from domicile.monitor.state import MonitorState


@dataclass(frozen=True)
class Thresholds:
    """Simple, configurable limits (per log)."""

    denied_per_minute: int = 200
    """More denials than this in one minute is a spike."""
    subjects_per_hour: int = 5000
    """More distinct subjects than this allowed to one principal in one hour is bulk access."""


HOUR = 13
"""Length of an RFC 3339 time cut to the hour (`2026-11-23T10`); 16 cuts to the minute."""

SKEW_MARGIN = 10_000
"""Entries before the computed start of an hour that are scanned too: entry times follow
the index closely, but concurrent appends can put a slightly older time after a newer."""


def threshold_alerts(
    state: MonitorState, origin: str, first: int, end: int, limits: Thresholds
) -> list[Alert]:
    """Alerts for the minutes and hours touched by entries [first, end) of `origin`.

    Only the facts from the start of the hour of entry `first` on are read (found by a
    binary search on the index, less a margin), so a round costs what it touched, not
    the whole history.
    """
    if end <= first:
        return []
    low = _hour_start(state, origin, first)
    return _spikes(state, origin, first, end, low, limits) + _bulk(
        state, origin, first, end, low, limits
    )


def _time(state: MonitorState, origin: str, index: int) -> str | None:
    rows = state.query("SELECT time FROM facts WHERE origin = ? AND idx = ?", [origin, index])
    return str(rows[0][0]) if rows else None


def _hour_start(state: MonitorState, origin: str, first: int) -> int:
    """The first index whose time is in the hour of entry `first`, less SKEW_MARGIN."""
    hour = (_time(state, origin, first) or "")[:HOUR]
    low, high = 0, first  # invariant: the answer is in [low, high]
    while low < high:
        middle = (low + high) // 2
        time = _time(state, origin, middle)
        if time is not None and time[:HOUR] < hour:
            low = middle + 1
        else:
            high = middle
    return max(0, low - SKEW_MARGIN)


def _spikes(
    state: MonitorState, origin: str, first: int, end: int, low: int, limits: Thresholds
) -> list[Alert]:
    rows = state.query(
        "SELECT substr(time, 1, 16) AS minute, COUNT(*) FROM facts WHERE origin = ?"
        " AND idx >= ? AND idx < ? AND kind = 'decision' AND result = 'deny'"
        " GROUP BY minute HAVING COUNT(*) > ?",
        [origin, low, end, limits.denied_per_minute],
    )
    touched = _touched(state, origin, first, end, 16) if rows else set()
    return [
        Alert(
            "denied-spike",
            origin,
            f"{count} denied requests in the minute {minute}",
            key=minute,
            evidence={"minute": minute, "denied": count, "limit": limits.denied_per_minute},
            severity="high",
        )
        for minute, count in rows
        if (minute,) in touched
    ]


def _bulk(
    state: MonitorState, origin: str, first: int, end: int, low: int, limits: Thresholds
) -> list[Alert]:
    rows = state.query(
        "SELECT principal, hour, COUNT(*) FROM (SELECT DISTINCT principal,"
        " substr(time, 1, 13) AS hour, subject_ref FROM facts WHERE origin = ? AND idx >= ?"
        " AND idx < ? AND kind = 'decision' AND result = 'allow' AND subject_ref IS NOT NULL)"
        " AS seen GROUP BY principal, hour HAVING COUNT(*) > ?",
        [origin, low, end, limits.subjects_per_hour],
    )
    touched = _touched(state, origin, first, end, HOUR, "principal, ") if rows else set()
    return [
        Alert(
            "bulk-access",
            origin,
            f"principal `{principal}` reached {count} subjects in the hour {hour}",
            key=f"{principal}|{hour}",
            evidence={"principal": principal, "hour": hour, "subjects": count},
            severity="high",
        )
        for principal, hour, count in rows
        if (principal, hour) in touched
    ]


def _touched(
    state: MonitorState, origin: str, first: int, end: int, cut: int, by: str = ""
) -> set[tuple[object, ...]]:
    """The (`by` columns and) times cut to `cut` of the decisions in [first, end).

    Only a minute or hour these touch is judged: one that ran over its limit before
    was judged then. Asked only once some minute or hour is over its limit.
    """
    rows = state.query(
        f"SELECT DISTINCT {by}substr(time, 1, {cut}) FROM facts"
        " WHERE origin = ? AND idx >= ? AND idx < ? AND kind = 'decision'",
        [origin, first, end],
    )
    return {tuple(row) for row in rows}
