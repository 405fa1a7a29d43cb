"""The tamper matrix: each way of cheating raises the monitor's matching alert.

A real gateway (open_runtime, used only here to make data) serves its log through its
own app; tampering is done to its stored tables, to what it records, or by a proxy in
front of it that serves a doctored log signed with the log's own key (a lying server).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from domicile.api.app import create_app
from domicile.gateway.request import Event
from domicile.ledger.checkpoint import Checkpoint, sign_checkpoint
from domicile.ledger.tiles import decode_bundle, encode_bundle
from domicile.monitor.client import LogClient
from domicile.monitor.server import make_server, serve_in_thread
from domicile.monitor.service import Monitor, MonitorConfig
from domicile.monitor.witness import Witness, load_or_create_cosigner
from domicile.runtime import Runtime, open_runtime
from domicile.settings import Settings

PERSON = {"full_name": "Ana Silva", "email": "ana@example.org", "display_name": "Ana"}
REGIONS = ("eu-ie", "us")
Doctor = Callable[[httpx.Request, httpx.Response], httpx.Response]


@dataclass
class World:
    runtime: Runtime
    api: TestClient
    keys: list[str]
    build: str
    settings: Settings


def _sign_all(runtime: Runtime) -> None:
    for region in REGIONS:
        runtime.logs[region].sign_checkpoint()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    settings = Settings(data_dir=tmp_path / "gw", checkpoint_interval=3600)
    runtime = open_runtime(settings)
    svc = runtime.principals.add("svc-eu", "Shop EU Ltd", "IE", {"service"})
    svc_us = runtime.principals.add("svc-us", "Shop US Inc", "US", {"service"})
    with TestClient(create_app(settings, runtime), raise_server_exceptions=False) as api:
        for n in range(200):
            token = svc if n % 2 else svc_us
            country = "IE" if n % 2 else "US"
            body = {"country": country, "fields": PERSON}
            made = api.post("/v1/subjects", json=body, headers={"Authorization": f"Bearer {token}"})
            assert made.status_code == 201, made.text
            sid = made.json()["id"]
            for purpose in ("support", "marketing"):
                api.get(
                    f"/v1/subjects/{sid}?fields=email,display_name&purpose={purpose}",
                    headers={"Authorization": f"Bearer {token}"},
                )
        _sign_all(runtime)
        keys = [runtime.logs[r].signer.verifier().verifier_key for r in REGIONS]
        yield World(runtime, api, keys, runtime.build, settings)
    runtime.close()


def _proxy(api: TestClient, doctor: Doctor | None = None) -> LogClient:
    def handle(request: httpx.Request) -> httpx.Response:
        got = api.get(request.url.path, params=request.url.params)
        response = httpx.Response(got.status_code, content=got.content, headers=got.headers)
        return doctor(request, response) if doctor else response

    return LogClient(http=httpx.Client(transport=httpx.MockTransport(handle), base_url="http://gw"))


def _monitor(world: World, tmp: Path, client: LogClient, **kw: object) -> Monitor:
    config = MonitorConfig(tmp, world.keys, approved_builds=[world.build], sinks=[], **kw)  # type: ignore[arg-type]
    return Monitor(config, client)


def _kinds(monitor: Monitor) -> list[str]:
    return sorted({a["kind"] for a in monitor.state.alerts()})


def _bundle_doctor(change: Callable[[list[bytes]], list[bytes]]) -> Doctor:
    def doctor(request: httpx.Request, response: httpx.Response) -> httpx.Response:
        if "/eu-ie/log/tile/entries/" in request.url.path and response.status_code == 200:
            entries = change(decode_bundle(response.content))
            return httpx.Response(200, content=encode_bundle(entries))
        return response

    return doctor


def test_untampered_run_raises_nothing(world: World, tmp_path: Path) -> None:
    monitor = _monitor(world, tmp_path / "m", _proxy(world.api))
    assert monitor.run_once() == 0, monitor.state.alerts()
    size = world.runtime.logs["eu-ie"].size
    verified = monitor.state.verified(world.runtime.logs["eu-ie"].origin)
    assert verified is not None
    assert verified.size == size
    assert size > 256


def _edit(entries: list[bytes]) -> list[bytes]:
    entry = json.loads(entries[5])
    entry["result"] = "allow" if entry.get("result") == "deny" else "deny"
    entries[5] = json.dumps(entry, sort_keys=True, separators=(",", ":")).encode()
    return entries


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(_edit, id="edited"),
        pytest.param(lambda e: e[:3] + e[4:] + e[-1:], id="deleted"),
        pytest.param(lambda e: [e[1], e[0], *e[2:]], id="reordered"),
    ],
)
def test_doctored_entries_are_a_rewritten_log(
    world: World, tmp_path: Path, change: Callable[[list[bytes]], list[bytes]]
) -> None:
    monitor = _monitor(world, tmp_path / "m", _proxy(world.api, _bundle_doctor(change)))
    monitor.run_once()
    assert "log-rewritten" in _kinds(monitor)


def test_a_gateway_that_does_not_answer_is_not_a_rewrite(world: World, tmp_path: Path) -> None:
    failing = {"on": True}

    def doctor(request: httpx.Request, response: httpx.Response) -> httpx.Response:
        if failing["on"] and "/tile/entries/" in request.url.path:
            return httpx.Response(503, text="overloaded")
        return response

    monitor = _monitor(world, tmp_path / "m", _proxy(world.api, doctor))
    assert monitor.run_once() == 0
    assert monitor.state.verified(world.runtime.logs["eu-ie"].origin) is None  # not yet
    failing["on"] = False
    assert monitor.run_once() == 0, monitor.state.alerts()
    verified = monitor.state.verified(world.runtime.logs["eu-ie"].origin)
    assert verified is not None
    assert verified.size == world.runtime.logs["eu-ie"].size


def test_edited_stored_bundle_is_caught(world: World, tmp_path: Path) -> None:
    db = sqlite3.connect(world.settings.data_dir / "regions" / "eu-ie" / "ledger.db")
    (data,) = db.execute("SELECT data FROM ledger_bundles ORDER BY 1 LIMIT 1").fetchone()
    db.execute("UPDATE ledger_bundles SET data = ? WHERE data = ?", (
        encode_bundle(_edit(decode_bundle(data))), data))  # fmt: skip
    db.commit()
    db.close()
    monitor = _monitor(world, tmp_path / "m", _proxy(world.api))
    monitor.run_once()
    assert _kinds(monitor) == ["log-rewritten"]


def _old_checkpoint(world: World, doctor_root: bool) -> str:
    log = world.runtime.logs["eu-ie"]
    size = 10
    root = bytes(32) if doctor_root else log.root(size)
    return sign_checkpoint(Checkpoint(log.origin, size, root), [log.signer])


def test_truncated_log(world: World, tmp_path: Path) -> None:
    monitor = _monitor(world, tmp_path / "m", _proxy(world.api))
    assert monitor.run_once() == 0
    note = _old_checkpoint(world, doctor_root=False)

    def doctor(request: httpx.Request, response: httpx.Response) -> httpx.Response:
        if request.url.path.endswith("/eu-ie/log/checkpoint"):
            return httpx.Response(200, text=note)
        return response

    monitor.client = _proxy(world.api, doctor)
    monitor.run_once()
    assert _kinds(monitor) == ["log-truncated"]


def test_resigned_different_root_for_old_size(world: World, tmp_path: Path) -> None:
    monitor = _monitor(world, tmp_path / "m", _proxy(world.api))
    good = _old_checkpoint(world, doctor_root=False)
    log = world.runtime.logs["eu-ie"]
    monitor.state.add_checkpoint(log.origin, 10, log.root(10), good, "gateway")
    assert monitor.run_once() == 0
    bad = _old_checkpoint(world, doctor_root=True)

    def doctor(request: httpx.Request, response: httpx.Response) -> httpx.Response:
        if request.url.path.endswith("/eu-ie/log/checkpoint"):
            return httpx.Response(200, text=bad)
        return response

    monitor.client = _proxy(world.api, doctor)
    monitor.run_once()
    alerts = [a for a in monitor.state.alerts() if a["kind"] == "split-view"]
    assert alerts
    assert set(alerts[0]["evidence"]["checkpoints"]) == {good, bad}


def test_two_views_to_two_monitors(world: World, tmp_path: Path) -> None:
    """Monitor A sees the real log; B is shown a fork. B's checkpoint reaches A's witness."""
    log = world.runtime.logs["eu-ie"]
    real = log.latest_checkpoint()
    assert real is not None
    forked = sign_checkpoint(Checkpoint(log.origin, real.size, bytes(32)), [log.signer])

    def doctor(request: httpx.Request, response: httpx.Response) -> httpx.Response:
        if request.url.path.endswith("/eu-ie/log/checkpoint"):
            return httpx.Response(200, text=forked)
        return response

    a = _monitor(world, tmp_path / "a", _proxy(world.api))
    b = _monitor(world, tmp_path / "b", _proxy(world.api, doctor))
    assert a.run_once() == 0
    b.run_once()
    assert "log-rewritten" in _kinds(b)  # B's fork does not match the entries it gets
    witness = Witness(a.state, load_or_create_cosigner(tmp_path / "a", "a.example/w"),
                      a.verifiers, a.emit)  # fmt: skip
    answer = witness.add_checkpoint(f"old {real.size}\n\n".encode() + forked.encode())
    assert answer.status == 409
    split = [x for x in a.state.alerts() if x["kind"] == "split-view"]
    assert split
    assert set(split[0]["evidence"]["checkpoints"]) == {real.note, forked}


def test_two_views_caught_by_exchanging_with_a_peer_monitor(world: World, tmp_path: Path) -> None:
    """B verified a fork (a lying gateway showed it a consistent other tree); A, asking its
    peer B for its checkpoints, sees the other root for a size it knows."""
    log = world.runtime.logs["eu-ie"]
    real = log.latest_checkpoint()
    assert real is not None
    forked = sign_checkpoint(Checkpoint(log.origin, real.size, bytes(32)), [log.signer])
    b = _monitor(world, tmp_path / "b", _proxy(world.api))
    with b.state.transaction() as db:
        db.execute("INSERT INTO logs VALUES (?, ?, ?, ?, ?)",
                   (log.origin, real.size, bytes(32), forked, b""))  # fmt: skip
    server = make_server(
        "127.0.0.1",
        0,
        b.state,
        Witness(
            b.state, load_or_create_cosigner(tmp_path / "b", "b.example/w"), b.verifiers, b.emit
        ),
    )
    serve_in_thread(server)
    peer = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        a = _monitor(world, tmp_path / "a", _proxy(world.api), peers=[peer])
        assert a.run_once() == 1
    finally:
        server.shutdown()
        server.server_close()
    (split,) = a.state.alerts()
    assert split["kind"] == "split-view"
    assert set(split["evidence"]["checkpoints"]) == {real.note, forked}
    assert a.run_once() == 0  # raised once


def test_decryption_without_decision(world: World, tmp_path: Path) -> None:
    monitor = _monitor(world, tmp_path / "m", _proxy(world.api))
    assert monitor.run_once() == 0
    db = sqlite3.connect(world.settings.data_dir / "regions" / "eu-ie" / "keys" / "keyring.db")
    last_id, action, at, refs = db.execute(
        "SELECT last_id, action, unwrapped_at, subject_refs FROM unwrap_groups"
        " ORDER BY last_id DESC LIMIT 1"
    ).fetchone()
    # One more unwrap of a subject seen before, pointing at no allow decision for it.
    db.execute(
        "INSERT INTO unwrap_groups (last_id, count, decision_id, ledger_index, action,"
        " unwrapped_at, subject_refs) VALUES (?, 1, ?, 3, ?, ?, ?)",
        (last_id + 1, "f" * 32, action, at, refs[:32]),
    )
    db.commit()
    db.close()
    monitor.run_once()
    assert _kinds(monitor) == ["unwrap-without-decision"]


def test_allow_against_policy(world: World, tmp_path: Path) -> None:
    log = world.runtime.logs["eu-ie"]
    entries = [json.loads(log.entry(i)) for i in range(log.size)]
    denied = next(e for e in entries if e["kind"] == "decision" and e["result"] == "deny")
    attributes = {k: v for k, v in denied.items() if k not in {"v", "kind", "region", "time"}}
    attributes.update(result="allow", decision_id="e" * 32)
    attributes["allowed_fields"] = attributes["input"]["resource"]["fields"]
    attributes["withheld"] = {}
    world.runtime.gateway.record([Event("decision", "eu-ie", attributes)])
    _sign_all(world.runtime)
    monitor = _monitor(world, tmp_path / "m", _proxy(world.api))
    monitor.run_once()
    assert _kinds(monitor) == ["allow-against-policy"]


def test_unknown_gateway_build(world: World, tmp_path: Path) -> None:
    config = MonitorConfig(tmp_path / "m", world.keys, approved_builds=["0" * 64], sinks=[])
    monitor = Monitor(config, _proxy(world.api))
    monitor.run_once()
    assert _kinds(monitor) == ["unknown-build"]
