"""Prometheus metrics at `GET /metrics`: the HTTP traffic, what the ledgers recorded, the
state of each region's log and the bulk-transfer counters, read when scraped.

Labels never carry a subject, a token or a field value: a route is its path template
(`/v1/subjects/{subject_id}`), and a request that matched no route is `unmatched`. Each
app has its own registry, so two apps in one process (tests) count apart.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from fastapi import FastAPI, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from domicile.runtime import Runtime

UNMATCHED = "unmatched"
"""The route label of a request no route matched (a 404): unbounded paths stay out."""


class HttpMetrics:
    """ASGI middleware: counts requests by method, route and status, and times them."""

    def __init__(self, app: ASGIApp, registry: CollectorRegistry) -> None:
        self.app = app
        self.requests = Counter(
            "domicile_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.seconds = Histogram(
            "domicile_http_request_duration_seconds",
            "Time to answer an HTTP request, by method and route template.",
            ["method", "route"],
            registry=registry,
        )
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # what the client gets if the app raises before answering

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        start = time.perf_counter()
        try:
            await self.app(scope, receive, sending)
        finally:
            key = (scope["method"], getattr(scope.get("route"), "path", UNMATCHED), status)
            children = self._children.get(key)
            if children is None:  # once per method, route and status: labels() is slow
                method, route, _ = key
                children = self._children[key] = (
                    self.seconds.labels(method, route),
                    self.requests.labels(method, route, str(status)),
                )
            children[0].observe(time.perf_counter() - start)
            children[1].inc()


class LedgerCollector(Collector):
    """What the running gateway's ledgers hold and recorded, read at scrape time."""

    def __init__(self, runtime: Callable[[], Runtime | None]) -> None:
        self._runtime = runtime

    def collect(self) -> Iterator[Metric]:
        """The families below, empty until the app has started."""
        runtime = self._runtime()
        if runtime is None:
            return
        entries = CounterMetricFamily(
            "domicile_ledger_entries",
            "Entries this process made durable in a region's log, by kind.",
            labels=["region", "kind"],
        )
        decisions = CounterMetricFamily(
            "domicile_decisions",
            "Access decisions this process recorded, by region and result (allow, deny).",
            labels=["region", "result"],
        )
        by_kind: dict[tuple[str, str], int] = {}
        for (region, kind, result), count in sorted(runtime.gateway.recorder.recorded().items()):
            by_kind[region, kind] = by_kind.get((region, kind), 0) + count
            if kind == "decision":
                decisions.add_metric([region, result], count)
        for (region, kind), count in sorted(by_kind.items()):
            entries.add_metric([region, kind], count)
        yield entries
        yield decisions
        yield from _log_state(runtime)


def _log_state(runtime: Runtime) -> Iterator[Metric]:
    size = GaugeMetricFamily(
        "domicile_ledger_size", "Entries integrated in a region's log.", labels=["region"]
    )
    unsigned = GaugeMetricFamily(
        "domicile_ledger_unsigned_entries",
        "Entries of a region's log that no signed checkpoint covers yet (grows if the"
        " checkpointer stops).",
        labels=["region"],
    )
    cosigned = GaugeMetricFamily(
        "domicile_ledger_cosigned_size",
        "The largest size of a region's log each configured witness has cosigned.",
        labels=["region", "witness"],
    )
    witnesses = [w.verifier.name for w in runtime.checkpointer.witnesses]
    for region, log in sorted(runtime.logs.items()):
        latest = log.latest_checkpoint()
        size.add_metric([region], log.size)
        unsigned.add_metric([region], log.size - (latest.size if latest else 0))
        for witness in witnesses:
            cosigned.add_metric([region, witness], log.last_cosigned_size(witness))
    yield size
    yield unsigned
    yield cosigned


class TransferCollector(Collector):
    """The bulk-threshold counters (distinct subjects sent per destination country or
    agreement, and data class) and the limits of each class, read at scrape time."""

    def __init__(self, runtime: Callable[[], Runtime | None]) -> None:
        self._runtime = runtime

    def collect(self) -> Iterator[Metric]:
        """Two families, empty until the app has started."""
        runtime = self._runtime()
        if runtime is None or not runtime.transfers.counters:
            return
        counter = next(iter(runtime.transfers.counters.values()))  # one store for all
        subjects = GaugeMetricFamily(
            "domicile_transfer_subjects",
            "Distinct subjects transferred in the rolling window, by scope (destination"
            " country or agreement) and data class; a transfer past the limit is blocked.",
            labels=["scope", "data_class"],
        )
        for scope, data_class, total in counter.totals():
            subjects.add_metric([scope, data_class], total)
        limits = GaugeMetricFamily(
            "domicile_transfer_subject_limit",
            "The bulk-threshold limit of each data class, per destination country.",
            labels=["data_class"],
        )
        for data_class, limit in sorted(counter.config.limits.items()):
            limits.add_metric([data_class], limit)
        yield subjects
        yield limits


def install(app: FastAPI) -> None:
    """Count the app's HTTP traffic and serve `GET /metrics` (no token: it says nothing of
    any subject, and the logs it summarises are public to monitors already)."""
    registry = CollectorRegistry()
    for collector in (ProcessCollector, PlatformCollector, GCCollector):
        collector(registry=registry)

    def running() -> Runtime | None:
        runtime: Runtime | None = getattr(app.state, "runtime", None)
        return runtime

    registry.register(LedgerCollector(running))
    registry.register(TransferCollector(running))
    app.add_middleware(HttpMetrics, registry=registry)

    @app.get("/metrics", tags=["operations"], response_class=Response)
    def metrics(request: Request) -> Response:
        """Prometheus text exposition of the gateway's metrics."""
        del request
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
