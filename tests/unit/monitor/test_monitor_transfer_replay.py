"""Decisions under a transfer agreement record its destination country, and the monitor
replays them with it: the same allow sent to a country of concern is against policy."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient

from domicile.api.app import create_app
from domicile.catalog.catalog import load_catalog
from domicile.ledger.entry import decode_entry
from domicile.monitor.replay import Replayer
from domicile.residency.topology import load_topology
from domicile.runtime import open_runtime
from domicile.settings import Settings
from domicile.transfers.model import AgreementDraft, TrustStatus


def test_transfer_decisions_replay_with_their_destination(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "gw", checkpoint_interval=3600)
    runtime = open_runtime(settings)
    try:
        svc = runtime.principals.add("svc-eu", "Shop EU Ltd", "IE", {"service"})
        officer = runtime.principals.add("officer-ie", "Trusted Security Partner EU", "IE",
                                         {"officer"})  # fmt: skip
        desk = runtime.transfers
        desk.destinations.register("Acme Analytics", "US", TrustStatus.TRUSTED, by="test")
        now = datetime.now(UTC)
        desk.agreements.create(
            AgreementDraft(
                id="eu-us", destination_entity="Acme Analytics", destination_country="US",
                purpose="analytics", legal_basis="scc", tia_reference="TIA-1",
                fields={"display_name": None}, valid_from=now - timedelta(days=1),
                valid_until=now + timedelta(days=30),
            ),
            runtime.catalog, by="test",
        )  # fmt: skip
        with TestClient(create_app(settings, runtime)) as api:
            ids = []
            for i in range(6):
                body = {"country": "IE", "fields": {"display_name": f"p{i}"}}
                made = api.post("/v1/subjects", headers={"Authorization": f"Bearer {svc}"},
                                json=body)  # fmt: skip
                assert made.status_code == 201, made.text
                ids.append(made.json()["id"])
            got = api.post("/v1/exports", headers={"Authorization": f"Bearer {officer}"}, json={
                "region": "eu-ie", "agreement": "eu-us", "subjects": ids,
                "fields": ["display_name"]})  # fmt: skip
            assert got.status_code == 200, got.text
        log = runtime.logs["eu-ie"]
        entries = [decode_entry(log.entry(i)) for i in range(log.size)]
    finally:
        runtime.close()

    replayer = Replayer(load_topology(), load_catalog())
    for entry in entries:
        if entry["kind"] == "policy-version":
            replayer.add_version(entry)
    sent = [e for e in entries if e["kind"] == "decision" and e["action"] == "transfer"]
    assert sent
    assert all(e["result"] == "allow" for e in sent)
    assert all(e["input"]["context"]["destination_country"] == "US" for e in sent)
    assert all(replayer.replay(e).mismatch == "" for e in sent)
    forged = copy.deepcopy(sent[0])
    forged["input"]["context"]["destination_country"] = "CN"
    assert replayer.replay(forged).mismatch == "allow-against-policy"
