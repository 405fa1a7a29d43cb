"""Cross-checks: transfers against the agreements in force, erasures, migrations, relocations.

A real gateway makes real transfers (a remote read and an export under an agreement),
an erasure and a relocation: the monitor raises nothing for them. Then a lying gateway
records, through its own recorder (so every entry is signed and verifies), each kind of
inconsistent event, and the monitor raises the matching alert.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from domicile.api.app import create_app
from domicile.errors import RequestAbandoned
from domicile.gateway.dataset_export import ExportSpec, finish_export, prepare_export
from domicile.gateway.request import Event
from domicile.ledger.entry import decode_entry
from domicile.monitor.client import LogClient
from domicile.monitor.consistency import RELOCATION_GRACE_SECONDS, unpaired_relocations
from domicile.monitor.report import write_report
from domicile.monitor.service import Monitor, MonitorConfig
from domicile.monitor.state import MonitorState
from domicile.runtime import Runtime, open_runtime
from domicile.settings import Settings

PERSON = {
    "full_name": "Sofia Rossi",
    "email": "sofia.rossi@example.org",
    "birth_date": "1991-02-03",
    "display_name": "Sofia",
    "coarse_location": "IE",
    "follower_count": 40,
}
PRINCIPALS = {
    "admin": ("operator", "IE", {"admin"}),
    "svc-eu": ("Shop EU Ltd", "IE", {"service"}),
    "officer-ie": ("Trusted Security Partner EU", "IE", {"officer"}),
    "analyst-us": ("Analytics Inc", "US", {"analyst"}),
}


@dataclass
class World:
    runtime: Runtime
    api: TestClient
    tokens: dict[str, str]
    subjects: list[str]
    build: str

    def h(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def entries(self, region: str = "eu-ie") -> list[tuple[int, dict[str, Any]]]:
        log = self.runtime.logs[region]
        return [(i, decode_entry(log.entry(i))) for i in range(log.size)]

    def last(self, kind: str, **match: object) -> tuple[int, dict[str, Any]]:
        return next(
            (i, e)
            for i, e in reversed(self.entries())
            if e["kind"] == kind and all(e.get(k) == v for k, v in match.items())
        )

    def record(self, *events: Event) -> None:
        self.runtime.gateway.record(list(events))

    def monitor(self, tmp: Path, state_url: str | None = None) -> Monitor:
        for log in self.runtime.logs.values():
            log.sign_checkpoint()
        keys = [log.signer.verifier().verifier_key for log in self.runtime.logs.values()]
        config = MonitorConfig(
            tmp, keys, approved_builds=[self.build], sinks=[], state_url=state_url
        )
        return Monitor(config, LogClient(http=self.api))  # type: ignore[arg-type]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    settings = Settings(data_dir=tmp_path / "gw", checkpoint_interval=3600)
    runtime = open_runtime(settings)
    build = runtime.build
    tokens = {pid: runtime.principals.add(pid, e, c, r) for pid, (e, c, r) in PRINCIPALS.items()}
    with TestClient(create_app(settings, runtime), raise_server_exceptions=False) as api:
        world = World(runtime, api, tokens, [], build)
        for i in range(6):
            person = {**PERSON, "display_name": f"p{i}", "email": f"p{i}@example.org"}
            made = api.post(
                "/v1/subjects", json={"country": "IE", "fields": person}, headers=world.h("svc-eu")
            )
            assert made.status_code == 201, made.text
            world.subjects.append(made.json()["id"])
        admin = world.h("admin")
        assert api.put("/v1/destinations/Analytics Inc", headers=admin,
                       json={"country": "US", "status": "trusted"}).status_code == 200  # fmt: skip
        now = datetime.now(UTC)
        agreement = {
            "id": "eu-us-analytics", "destination_entity": "Analytics Inc",
            "destination_country": "US", "purpose": "analytics",
            "legal_basis": "SCC-2021/914 module 1", "tia_reference": "TIA-1",
            "fields": {"display_name": "pseudonymise", "birth_date": None,
                       "coarse_location": None, "follower_count": None},
            "valid_from": (now - timedelta(days=1)).isoformat(),
            "valid_until": (now + timedelta(days=30)).isoformat(),
        }  # fmt: skip
        assert api.post("/v1/agreements", json=agreement, headers=admin).status_code == 201
        yield world
    runtime.close()


def _act(world: World) -> None:
    """Real transfers, an erasure and a relocation, all as the gateway makes them."""
    sid = world.subjects[0]
    read = world.api.get(f"/v1/subjects/{sid}?fields=display_name,follower_count&purpose=analytics",
                         headers=world.h("analyst-us"))  # fmt: skip
    assert read.status_code == 200, read.text
    export = world.api.post("/v1/exports", headers=world.h("officer-ie"), json={
        "region": "eu-ie", "agreement": "eu-us-analytics", "subjects": world.subjects[:5],
        "fields": ["display_name", "birth_date", "coarse_location"]})  # fmt: skip
    assert export.status_code == 200, export.text
    _export_cut_short(world)
    erased = world.api.delete(f"/v1/subjects/{world.subjects[5]}", headers=world.h("svc-eu"))
    assert erased.status_code == 204, erased.text
    moved = world.api.post(f"/v1/subjects/{world.subjects[4]}:relocate",
                           json={"country": "US"}, headers=world.h("svc-eu"))  # fmt: skip
    assert moved.status_code == 200, moved.text


def _export_cut_short(world: World) -> None:
    """One export whose client went away before its release, one whose stream broke."""
    runtime = world.runtime
    officer = runtime.principals.authenticate(world.tokens["officer-ie"])
    spec = ExportSpec(region="eu-ie", agreement_id="eu-us-analytics",
                      subjects=tuple(world.subjects[:5]), fields=("display_name",))  # fmt: skip
    with pytest.raises(RequestAbandoned):
        prepare_export(runtime.gateway, runtime.transfers, officer, spec, min_k=2,
                       abandoned=lambda: True)  # fmt: skip
    prepared = prepare_export(runtime.gateway, runtime.transfers, officer, spec, min_k=2)
    assert finish_export(runtime.gateway, prepared) is not None  # not a byte handed out


def _kinds(monitor: Monitor) -> list[str]:
    return sorted({a["kind"] for a in monitor.state.alerts()})


def test_real_transfers_erasures_and_relocations_raise_nothing(
    world: World, tmp_path: Path
) -> None:
    _act(world)
    kinds = {e.get("event") for _, e in world.entries() if e["kind"] == "transfer"}
    assert {"remote-read", "export", "export-abandoned", "export-interrupted",
            "agreement-version", "destination-version"} <= kinds  # fmt: skip
    monitor = world.monitor(tmp_path / "m")
    assert monitor.run_once() == 0, [a["message"] for a in monitor.state.alerts()]
    tables = {t: monitor.state.query(f"SELECT COUNT(*) FROM {t}")[0][0]
              for t in ("agreements", "destinations", "erasures", "relocations")}  # fmt: skip
    assert tables == {"agreements": 4, "destinations": 4, "erasures": 1, "relocations": 2}


def _forged_transfer(world: World, **change: object) -> Event:
    _, entry = world.last("transfer", event="remote-read")
    attributes = {k: v for k, v in entry.items() if k not in {"v", "kind", "region", "time"}}
    return Event("transfer", "eu-ie", {**attributes, **change})


@pytest.mark.parametrize(
    ("change", "kind"),
    [
        ({"agreement_id": "never-made"}, "transfer-without-agreement"),
        ({"fields": {"email": "keep"}}, "transfer-outside-agreement"),
        ({"fields": {"display_name": "keep"}}, "transfer-outside-agreement"),
        ({"destination_entity": "Shady Corp"}, "transfer-outside-agreement"),
        ({"purpose": "marketing"}, "transfer-outside-agreement"),
        ({"agreement_version": 7}, "transfer-outside-agreement"),
        ({"decision_id": "f" * 32}, "transfer-without-decision"),
        ({"decision_index": 0}, "transfer-without-decision"),
    ],
)
def test_a_transfer_outside_its_agreement_is_caught(
    world: World, tmp_path: Path, change: dict[str, object], kind: str
) -> None:
    _act(world)
    world.record(_forged_transfer(world, **change))
    monitor = world.monitor(tmp_path / "m")
    monitor.run_once()
    assert _kinds(monitor) == [kind]


def test_a_transfer_to_a_country_of_concern_is_caught(world: World, tmp_path: Path) -> None:
    _act(world)
    monitor = world.monitor(tmp_path / "m")
    assert monitor.run_once() == 0  # the next round starts after every decision
    world.record(_forged_transfer(world, destination_country="RU"))
    world.monitor(tmp_path / "m2").close()  # signs the new checkpoint
    monitor.run_once()
    assert _kinds(monitor) == ["country-of-concern", "transfer-outside-agreement"]


def test_a_transfer_after_the_agreement_ended_is_caught(world: World, tmp_path: Path) -> None:
    _act(world)
    admin = {**world.h("admin"), "If-Match": '"1"'}
    ended = world.api.post("/v1/agreements/eu-us-analytics:terminate", headers=admin)
    assert ended.status_code == 200, ended.text
    world.record(_forged_transfer(world, agreement_version=2))  # the version in force: ended
    monitor = world.monitor(tmp_path / "m")
    monitor.run_once()
    assert _kinds(monitor) == ["transfer-outside-agreement"]


def test_an_export_that_ends_after_its_agreement_is_held_to_its_decision(
    world: World, tmp_path: Path
) -> None:
    """An interruption recorded after the agreement ended is no new transfer (the export
    was checked when it was released); one that cites no export after its decision is
    caught."""
    _act(world)
    admin = {**world.h("admin"), "If-Match": '"1"'}
    ended = world.api.post("/v1/agreements/eu-us-analytics:terminate", headers=admin)
    assert ended.status_code == 200, ended.text
    _, cut = world.last("transfer", event="export-interrupted")
    again = {k: v for k, v in cut.items() if k not in {"v", "kind", "region", "time"}}
    world.record(Event("transfer", "eu-ie", {**again, "agreement_version": 2}))
    monitor = world.monitor(tmp_path / "m")
    assert monitor.run_once() == 0, [a["message"] for a in monitor.state.alerts()]
    world.record(Event("transfer", "eu-ie", {**again, "export_index": cut["decision_index"]}))
    world.monitor(tmp_path / "m2").close()  # signs the new checkpoint
    monitor.run_once()
    assert _kinds(monitor) == ["transfer-without-decision"]


def test_an_erasure_without_its_decision_is_caught(world: World, tmp_path: Path) -> None:
    _act(world)
    world.record(Event("erasure", "eu-ie", {"subject_ref": "r" * 43, "decision_id": "f" * 32}))
    monitor = world.monitor(tmp_path / "m")
    monitor.run_once()
    assert _kinds(monitor) == ["erasure-without-decision"]


def test_access_after_erasure_is_caught(world: World, tmp_path: Path) -> None:
    _act(world)
    _, erasure = world.last("erasure")
    _, read = world.last("decision", action="read", result="allow")
    attributes = {k: v for k, v in read.items() if k not in {"v", "kind", "region", "time"}}
    attributes["decision_id"] = "e" * 32
    attributes["input"] = json.loads(json.dumps(read["input"]))
    attributes["input"]["resource"]["subject_ref"] = erasure["subject_ref"]
    world.record(Event("decision", "eu-ie", attributes))
    monitor = world.monitor(tmp_path / "m")
    monitor.run_once()
    assert _kinds(monitor) == ["access-after-erasure"]


def test_a_migration_batch_recorded_twice_is_caught(world: World, tmp_path: Path) -> None:
    batch = {"source": "legacy-sg", "batch_id": "b-0001", "page": 0, "count": 10,
             "root": "ab" * 32, "digest": "hmac-sha256,rfc9162-merkle",
             "principal": {"id": "domicile-migrate", "entity": "operator"}}  # fmt: skip
    world.record(Event("migration-batch", "eu-ie", batch))
    first = world.monitor(tmp_path / "m")
    assert first.run_once() == 0, first.state.alerts()
    world.record(Event("migration-batch", "us", {**batch, "root": "cd" * 32}))
    world.runtime.logs["us"].sign_checkpoint()
    assert first.run_once() == 1
    (alert,) = first.state.alerts()
    assert alert["kind"] == "migration-batch-duplicate"
    assert alert["evidence"]["first"]["root"] == "ab" * 32


def test_a_relocation_that_never_arrives_is_caught(tmp_path: Path) -> None:
    state = MonitorState(tmp_path / "state.db")
    start = datetime(2026, 11, 1, tzinfo=UTC)
    late = start + timedelta(seconds=RELOCATION_GRACE_SECONDS + 1)
    with state.transaction() as db:
        db.executemany("INSERT INTO relocations VALUES (?, ?, ?, ?, ?, ?)", [
            ("r1", "out", "gw/log/eu-ie", 5, start.isoformat(), "us"),
            ("r1", "in", "gw/log/us", 9, start.isoformat(), "eu-ie"),
            ("r2", "out", "gw/log/eu-ie", 6, start.isoformat(), "us"),
        ])  # fmt: skip
    assert unpaired_relocations(state) == []  # the destination has not been read that far
    state.put("latest-time|gw/log/us", (start + timedelta(seconds=5)).isoformat())
    assert unpaired_relocations(state) == []  # still within the grace period
    state.put("latest-time|gw/log/us", late.isoformat())
    (alert,) = unpaired_relocations(state)
    assert (alert.kind, alert.index, alert.evidence["relocation_id"]) == (
        "relocation-unpaired",
        6,
        "r2",
    )
    state.close()


@pytest.mark.postgres
def test_the_state_can_live_in_postgresql(
    world: World, tmp_path: Path, pg_dsn: str, pg_prefix: str
) -> None:
    _act(world)
    world.record(_forged_transfer(world, agreement_id="never-made"))
    url = f"{pg_dsn}?schema={pg_prefix}_monitor"
    monitor = world.monitor(tmp_path / "m", url)
    assert monitor.run_once() == 1
    assert _kinds(monitor) == ["transfer-without-agreement"]
    origin = world.runtime.logs["eu-ie"].origin
    verified = monitor.state.verified(origin)
    assert verified is not None
    assert verified.size == world.runtime.logs["eu-ie"].size
    monitor.close()
    again = world.monitor(tmp_path / "m", url)  # resumes from the stored frontier
    assert again.run_once() == 0
    made = write_report(again.state, world.runtime.catalog, tmp_path / "report")
    assert made["regions"]["eu-ie"]["entries_in_period"] == verified.size
    assert (tmp_path / "report" / "report.html").exists()
    again.close()
    assert not (tmp_path / "m" / "monitor.db").exists()  # nothing was kept in SQLite


def test_administer_decisions_are_replayed(world: World, tmp_path: Path) -> None:
    assert world.api.get("/v1/principals", headers=world.h("admin")).status_code == 200
    assert world.api.get("/v1/principals", headers=world.h("svc-eu")).status_code == 403
    monitor = world.monitor(tmp_path / "m")
    assert monitor.run_once() == 0, [a["message"] for a in monitor.state.alerts()]
    _, denied = world.last("decision", action="administer", result="deny")
    attributes = {k: v for k, v in denied.items() if k not in {"v", "kind", "region", "time"}}
    world.record(Event("decision", "eu-ie", {**attributes, "decision_id": "d" * 32,
                                              "result": "allow"}))  # fmt: skip
    world.monitor(tmp_path / "m2").close()  # signs the new checkpoint
    assert monitor.run_once() == 1
    assert _kinds(monitor) == ["allow-against-policy"]
