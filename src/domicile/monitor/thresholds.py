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


def threshold_alerts(
    state: MonitorState, origin: str, first: int, end: int, limits: Thresholds
) -> list[Alert]:
    """Alerts for the minutes and hours touched by entries [first, end) of `origin`."""
    if end <= first:
        return []
    return _spikes(state, origin, first, end, limits) + _bulk(state, origin, first, end, limits)


def _spikes(
    state: MonitorState, origin: str, first: int, end: int, limits: Thresholds
) -> list[Alert]:
    rows = state.query(
        "SELECT substr(time, 1, 16) AS minute, COUNT(*) FROM facts WHERE origin = ?"
        " AND kind = 'decision' AND result = 'deny' AND substr(time, 1, 16) IN ("
        "  SELECT DISTINCT substr(time, 1, 16) FROM facts"
        "  WHERE origin = ? AND idx >= ? AND idx < ? AND kind = 'decision')"
        " GROUP BY minute HAVING COUNT(*) > ?",
        [origin, origin, first, end, limits.denied_per_minute],
    )
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
    ]


def _bulk(
    state: MonitorState, origin: str, first: int, end: int, limits: Thresholds
) -> list[Alert]:
    rows = state.query(
        "SELECT principal, substr(time, 1, 13) AS hour, COUNT(DISTINCT subject_ref) FROM facts"
        " WHERE origin = ? AND kind = 'decision' AND result = 'allow'"
        " AND subject_ref IS NOT NULL AND (principal, substr(time, 1, 13)) IN ("
        "  SELECT DISTINCT principal, substr(time, 1, 13) FROM facts"
        "  WHERE origin = ? AND idx >= ? AND idx < ? AND kind = 'decision')"
        " GROUP BY principal, hour HAVING COUNT(DISTINCT subject_ref) > ?",
        [origin, origin, first, end, limits.subjects_per_hour],
    )
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
    ]
