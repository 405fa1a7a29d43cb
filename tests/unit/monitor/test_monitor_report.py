"""The audit report: figures match known events, trace to ledger entries, hold no personal data."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from domicile.api.app import create_app
from domicile.cli import main
from domicile.gateway.request import Event
from domicile.monitor.client import LogClient
from domicile.monitor.service import Monitor, MonitorConfig
from domicile.runtime import Runtime, open_runtime
from domicile.settings import Settings

PEOPLE = [
    {"full_name": "Ana Silva", "email": "ana@example.org", "display_name": "Ana"},
    {"full_name": "Bruno Costa", "email": "bruno@example.org", "display_name": "Bruno"},
    {"full_name": "Carla Dias", "email": "carla@example.org", "display_name": "Carla"},
]
REGIONS = ("eu-ie", "us")
READS = {"support": 2, "marketing": 1}  # reads per subject and purpose


@dataclass
class World:
    runtime: Runtime
    api: TestClient
    subject_ids: list[str]
    tokens: list[str]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    settings = Settings(data_dir=tmp_path / "gw", checkpoint_interval=3600)
    runtime = open_runtime(settings)
    token = runtime.principals.add("svc-eu", "Shop EU Ltd", "IE", {"service"})
    headers = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(settings, runtime), raise_server_exceptions=False) as api:
        ids = []
        for person in PEOPLE:
            made = api.post(
                "/v1/subjects", json={"country": "IE", "fields": person}, headers=headers
            )
            assert made.status_code == 201, made.text
            ids.append(made.json()["id"])
        for sid in ids:
            for purpose, times in READS.items():
                for _ in range(times):
                    api.get(
                        f"/v1/subjects/{sid}?fields=email,display_name&purpose={purpose}",
                        headers=headers,
                    )
        runtime.gateway.record(
            [
                Event("transfer", "eu-ie", {
                    "event": "remote-read", "decision_id": "d" * 32, "decision_index": 3,
                    "principal_id": "svc-us", "agreement_id": "eu-us-analytics",
                    "agreement_version": 1, "destination_entity": "Analytics Inc",
                    "destination_country": "US", "purpose": "analytics",
                    "fields": {"display_name": "keep"}, "subjects": 1, "subject_ref": "r" * 64,
                }),
                Event("grant-step", "eu-ie", {
                    "grant_id": "g-1", "step": "requested", "by": "analyst-ie",
                    "requester": "analyst-ie", "state": "pending", "categories": ["restricted"],
                    "purpose": "security", "subject_refs": ["s" * 64], "steps_required": 1,
                    "approvals": [], "expires_at": None, "justification_sha256": "j" * 64,
                }),
                Event("grant-step", "eu-ie", {
                    "grant_id": "g-1", "step": "approved", "by": "approver-ie",
                    "requester": "analyst-ie", "state": "approved", "categories": ["restricted"],
                    "purpose": "security", "subject_refs": ["s" * 64], "steps_required": 1,
                    "approvals": ["approver-ie"], "expires_at": None,
                    "justification_sha256": "j" * 64,
                }),
            ]
        )  # fmt: skip
        for region in REGIONS:
            runtime.logs[region].sign_checkpoint()
        yield World(runtime, api, ids, [token])
    runtime.close()


def _run_monitor(world: World, data_dir: Path) -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        got = world.api.get(request.url.path, params=request.url.params)
        return httpx.Response(got.status_code, content=got.content, headers=got.headers)

    client = LogClient(
        http=httpx.Client(transport=httpx.MockTransport(handle), base_url="http://gw")
    )
    keys = [world.runtime.logs[r].signer.verifier().verifier_key for r in REGIONS]
    # No approved build: the gateway-build entries raise `unknown-build`, a known alert.
    monitor = Monitor(MonitorConfig(data_dir, keys, approved_builds=[], sinks=[]), client)
    monitor.run_once()
    monitor.close()


def _in(sources: dict[str, dict[str, object]], region: str, index: int) -> bool:
    for part in sources[region]["ranges"]:  # type: ignore[attr-defined]
        low, _, high = str(part).partition("-")
        if int(low) <= index <= int(high or low):
            return True
    return False


def test_report_figures_trace_to_entries(world: World, tmp_path: Path) -> None:
    data_dir, out = tmp_path / "mon", tmp_path / "out"
    _run_monitor(world, data_dir)
    result = CliRunner().invoke(main, [
        "monitor", "report", "--data-dir", str(data_dir), "--from", "2000-01-01",
        "--to", "2100-01-01T00:00:00Z", "--out", str(out),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    html = (out / "report.html").read_text()
    eu = report["regions"]["eu-ie"]
    entries = world.runtime.logs["eu-ie"]
    ledger = [json.loads(e) for e in _entries(world, "eu-ie")]

    # Reads by purpose: every read was decided and logged, allow or deny.
    for purpose, times in READS.items():
        fig = eu["purposes"][purpose]
        reads = fig.get("read:allowed", 0) + fig.get("read:denied", 0)
        assert reads == times * len(PEOPLE)
        logged = [
            i
            for i, e in enumerate(ledger)
            if e["kind"] == "decision"
            and e["action"] == "read"
            and e["input"]["context"].get("purpose") == purpose
        ]
        assert fig["sources"]["eu-ie"]["entries"] == len(logged)
        assert all(_in(fig["sources"], "eu-ie", i) for i in logged)
    assert eu["purposes"]["support"]["read:allowed"] == 2 * len(PEOPLE)

    # Volumes: allowed support reads of email (restricted?) and display_name by category.
    volumes = eu["volumes"]
    assert sum(v["fields"] for v in volumes.values()) == sum(
        len(e["allowed_fields"])
        for e in ledger
        if e["kind"] == "decision" and e["result"] == "allow"
    )
    assert any(v.get("distinct_subjects") == len(PEOPLE) for v in volumes.values())
    assert eu["principals"]["svc-eu"]["entity"] == ["Shop EU Ltd"]
    assert eu["entities"]["Shop EU Ltd"]["principals"] == ["svc-eu"]

    # The transfer destination and the grant approval, each traced to its entry.
    transfer_at = next(i for i, e in enumerate(ledger) if e["kind"] == "transfer")
    dest = eu["transfers"]["US / Analytics Inc"]
    assert dest["events"] == 1
    assert dest["agreements"] == ["eu-us-analytics"]
    assert dest["sources"]["eu-ie"]["ranges"] == [str(transfer_at)]
    grant = eu["approvals"]["g-1"]
    assert grant["step:approved"] == 1
    assert grant["approved_by"] == ["approver-ie"]
    assert grant["state"] == ["approved"]
    assert grant["sources"]["eu-ie"] == {
        "entries": 2, "ranges": [f"{transfer_at + 1}-{transfer_at + 2}"], "truncated": False,
    }  # fmt: skip

    # The alert, and the checkpoint anchoring every index.
    kinds = {a["kind"] for a in report["alerts"]["list"]}
    assert "unknown-build" in kinds
    build_at = next(i for i, e in enumerate(ledger) if e["kind"] == "gateway-build")
    assert _in(report["alerts"]["by_kind"]["unknown-build"]["sources"], "eu-ie", build_at)
    anchor = eu["anchor"]
    assert anchor["size"] == entries.size == len(ledger)
    assert anchor["origin"] == entries.origin
    assert anchor["note"].startswith(entries.origin)
    assert eu["last_index"] < anchor["size"]
    assert report["totals"]["purposes"]["support"]["read:allowed"] == 2 * len(PEOPLE)
    assert "Region eu-ie" in html
    assert "US / Analytics Inc" in html

    # No personal data: no subject id, field value, subject reference or hash of secrets.
    text = (out / "report.json").read_text() + html
    refs = {e.get("subject_ref") or e["input"]["resource"].get("subject_ref")
            for e in ledger if e["kind"] == "decision"} - {None}  # fmt: skip
    assert refs
    secrets = [*world.subject_ids, *world.tokens, *refs, "r" * 64, "s" * 64, "j" * 64]
    secrets += [v for person in PEOPLE for v in person.values()]
    leaked = [s for s in secrets if re.search(rf"\b{re.escape(s)}\b", text)]
    assert not leaked


def test_period_excludes_entries_outside_it(world: World, tmp_path: Path) -> None:
    data_dir, out = tmp_path / "mon", tmp_path / "out"
    _run_monitor(world, data_dir)
    result = CliRunner().invoke(main, [
        "monitor", "report", "--data-dir", str(data_dir), "--from", "2000-01-01",
        "--to", "2000-02-01", "--out", str(out),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["regions"]["eu-ie"]["entries_in_period"] == 0
    assert report["regions"]["eu-ie"]["purposes"] == {}
    assert report["alerts"]["list"] == []
    bad = CliRunner().invoke(main, ["monitor", "report", "--data-dir", str(data_dir),
                                    "--from", "yesterday", "--out", str(out)])  # fmt: skip
    assert bad.exit_code == 2


def _entries(world: World, region: str) -> list[bytes]:
    log = world.runtime.logs[region]
    return [log.entry(i) for i in range(log.size)]


def test_report_prints_to_pdf(
    world: World, tmp_path: Path, chromium: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOMICILE_CHROMIUM", str(chromium))
    data_dir, out = tmp_path / "mon", tmp_path / "out"
    _run_monitor(world, data_dir)
    result = CliRunner().invoke(main, [
        "monitor", "report", "--data-dir", str(data_dir), "--out", str(out), "--pdf",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    pdf = (out / "report.pdf").read_bytes()
    assert pdf.startswith(b"%PDF-")
    assert b"/Type /Page" in pdf or b"/Type/Page" in pdf
    assert "report.pdf" in result.output


def test_pdf_without_chromium_is_a_clear_error(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir, out = tmp_path / "mon", tmp_path / "out"
    _run_monitor(world, data_dir)
    monkeypatch.setenv("DOMICILE_CHROMIUM", str(tmp_path / "no-such-chromium"))
    result = CliRunner().invoke(main, [
        "monitor", "report", "--data-dir", str(data_dir), "--out", str(out), "--pdf",
    ])  # fmt: skip
    assert result.exit_code != 0
    assert "chromium" in result.output.lower()
    assert len(result.output.strip().splitlines()) == 1
    assert (out / "report.json").exists()  # what could be written was kept
