"""Decisions under a transfer agreement record its destination country, and the monitor
replays them with it: the same allow sent to a country of concern is against policy."""

from __future__ import annotations

import copy
from pathlib import Path

from fastapi.testclient import TestClient
from monitor_support import replayer_for

from domicile.api.app import create_app
from domicile.ledger.entry import decode_entry
from domicile.runtime import open_runtime
from domicile.settings import Settings
from transfer_support import register_irish, service_and_officer, stored_agreement


def test_transfer_decisions_replay_with_their_destination(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "gw", checkpoint_interval=3600)
    runtime = open_runtime(settings)
    try:
        svc, officer = service_and_officer(runtime)
        stored_agreement(runtime, "eu-us", "Acme Analytics", "US")
        with TestClient(create_app(settings, runtime)) as api:
            ids = register_irish(api, svc, [{"display_name": f"p{i}"} for i in range(6)])
            got = api.post("/v1/exports", headers={"Authorization": f"Bearer {officer}"}, json={
                "region": "eu-ie", "agreement": "eu-us", "subjects": ids,
                "fields": ["display_name"]})  # fmt: skip
            assert got.status_code == 200, got.text
        log = runtime.logs["eu-ie"]
        entries = [decode_entry(log.entry(i)) for i in range(log.size)]
    finally:
        runtime.close()

    replayer = replayer_for(entries)
    sent = [e for e in entries if e["kind"] == "decision" and e["action"] == "transfer"]
    assert sent
    assert all(e["result"] == "allow" for e in sent)
    assert all(e["input"]["context"]["destination_country"] == "US" for e in sent)
    assert all(replayer.replay(e).mismatch == "" for e in sent)
    forged = copy.deepcopy(sent[0])
    forged["input"]["context"]["destination_country"] = "CN"
    assert replayer.replay(forged).mismatch == "allow-against-policy"
