"""The decision index on both backends, its background build for a long backlog, and its
rebuild when a migration adds a column."""

from __future__ import annotations

import contextlib
import time
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from domicile.console import views
from domicile.console.index import DecisionIndex, Filters, newest_decisions
from domicile.errors import AccessDenied
from domicile.runtime import Runtime
from transfer_support import register_irish, service_and_officer, stored_agreement


def _decide(runtime: Runtime, who: str, purpose: str, fields: set[str]) -> None:
    """A read through the gateway, as the API makes it (decided, recorded; maybe denied)."""
    rows = runtime.directory.db.query(
        "SELECT id FROM subject_directory WHERE home_region = 'eu-ie' AND state = 'active'"
    )
    if not rows:
        runtime.gateway.register(runtime.principals.get("svc-eu"), "IE", {"email": "x@example.org"})
        return _decide(runtime, who, purpose, fields)
    with contextlib.suppress(AccessDenied):
        runtime.gateway.read(runtime.principals.get(who), str(rows[0][0]), sorted(fields), purpose)
    return None


def test_index_search_and_flows_on_each_backend(runtime: Runtime) -> None:
    runtime.principals.add("svc-eu", "Shop EU Ltd", "IE", {"service"})
    runtime.principals.add("svc-us", "Shop US Inc", "US", {"service"})
    for _ in range(3):
        _decide(runtime, "svc-eu", "support", {"email"})
        _decide(runtime, "svc-us", "support", {"display_name"})
    log = runtime.logs["eu-ie"]
    index = DecisionIndex(log, runtime.catalog)
    assert index.catch_up() == log.size == index.indexed()
    us = index.search(Filters(principal="svc-us"), None, 50)
    assert len(us) == 3
    assert all(r.destination == "US" and r.result == "deny" for r in us)
    assert all(r.destination_country == "" for r in us)  # a transfer under no agreement
    restricted = index.search(Filters(category="restricted"), None, 50)
    assert {r.principal for r in restricted} == {"svc-eu"}
    assert [r.index for r in restricted] == sorted((r.index for r in restricted), reverse=True)
    older = index.search(Filters(category="restricted"), restricted[0].index, 50)
    assert [r.index for r in older] == [r.index for r in restricted[1:]]
    today = datetime.now(UTC).date()
    flows = index.flows(today.isoformat(), (today + timedelta(days=1)).isoformat())
    assert flows == [("US", "deny", ",allowable,", "support", 3)]
    rows, _ = newest_decisions(log, runtime.catalog, None, 50)
    assert [r.index for r in rows][:6] == sorted((r.index for r in rows), reverse=True)[:6]
    assert views.check_residency(runtime).outside == 0


def test_a_long_backlog_is_indexed_in_the_background(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime.principals.add("svc-eu", "Shop EU Ltd", "IE", {"service"})
    runtime.principals.add("svc-us", "Shop US Inc", "US", {"service"})
    for _ in range(10):
        _decide(runtime, "svc-us", "support", {"display_name"})
    monkeypatch.setattr(views, "INLINE", 3)
    console = views.Console(runtime)
    rows, _, notice = views.access(console, "eu-ie", Filters(principal="svc-us"), None)
    deadline = time.monotonic() + 30
    while console.is_building("eu-ie") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not console.is_building("eu-ie")
    assert notice == "" or "is being built" in notice
    rows, _, notice = views.access(console, "eu-ie", Filters(principal="svc-us"), None)
    assert notice == ""
    assert len(rows) == 10


def test_an_index_built_before_destination_countries_is_built_again(
    runtime: Runtime, api: TestClient
) -> None:
    """An index of the first schema has no destination countries: the migration that adds
    them makes the next catch-up derive every row again, and the old rows stay searchable
    until it has."""
    svc, officer = service_and_officer(runtime)
    stored_agreement(runtime, "acme-us", "Acme Analytics", "US")
    ids = register_irish(api, svc, [{"display_name": f"p{i}"} for i in range(6)])
    body = {"region": "eu-ie", "agreement": "acme-us", "subjects": ids, "fields": ["display_name"]}
    got = api.post("/v1/exports", headers={"Authorization": f"Bearer {officer}"}, json=body)
    assert got.status_code == 200, got.text
    log = runtime.logs["eu-ie"]
    DecisionIndex(log, runtime.catalog).catch_up()
    with log.db.transaction() as tx:  # back to what the first schema built
        tx.execute("DROP INDEX console_decisions_destination_country")
        tx.execute("ALTER TABLE console_decisions DROP COLUMN destination_country")
        tx.execute("DELETE FROM schema_migrations WHERE component = 'console' AND version = 2")
    index = DecisionIndex(log, runtime.catalog)
    assert index.indexed() == 0
    (old,) = index.search(Filters(principal="officer-ie"), None, 50)
    assert (old.destination, old.destination_country) == ("IE", None)
    assert index.catch_up() == log.size
    (row,) = index.search(Filters(destination_country="US"), None, 50)
    assert (row.index, row.destination, row.destination_country) == (old.index, "IE", "US")
