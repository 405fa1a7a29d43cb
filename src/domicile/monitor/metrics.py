"""Prometheus metrics of the monitor (`GET /metrics` on its `--port` server), read from
its state when scraped: how far each log is verified and witnessed, and the alerts
raised, by kind and severity. Labels are log origins and alert kinds: no subject."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from domicile.monitor.state import MonitorState

CONTENT_TYPE = CONTENT_TYPE_LATEST
"""The media type of the exposition."""


class MonitorCollector(Collector):
    """The monitor's progress and findings, from its state tables."""

    def __init__(self, state: MonitorState) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        """Three families; a log appears once the monitor has verified or witnessed it."""
        yield self._per_log(
            "domicile_monitor_verified_size",
            "Size of each log up to which the monitor re-hashed every entry and checked"
            " consistency.",
            "logs",
        )
        yield self._per_log(
            "domicile_monitor_witnessed_size",
            "Size of each log's latest checkpoint the monitor cosigned as a witness.",
            "witnessed",
        )
        alerts = CounterMetricFamily(
            "domicile_monitor_alerts",
            "Alerts the monitor raised (and kept), by kind and severity.",
            labels=["kind", "severity"],
        )
        for kind, severity, count in self.state.query(
            "SELECT kind, severity, COUNT(*) FROM alerts GROUP BY kind, severity"
            " ORDER BY kind, severity"
        ):
            alerts.add_metric([kind, severity], count)
        yield alerts

    def _per_log(self, name: str, documentation: str, table: str) -> GaugeMetricFamily:
        """A gauge of the `size` column of `table` (one of the state's), per log origin."""
        family = GaugeMetricFamily(name, documentation, labels=["origin"])
        for origin, size in self.state.query(f"SELECT origin, size FROM {table} ORDER BY origin"):
            family.add_metric([origin], size)
        return family


def registry_for(state: MonitorState) -> CollectorRegistry:
    """A registry holding the monitor's collector (one per server)."""
    registry = CollectorRegistry()
    registry.register(MonitorCollector(state))
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    """The registry in Prometheus text format."""
    return generate_latest(registry)
