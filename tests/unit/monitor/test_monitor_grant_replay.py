"""Decisions under a grant record the grant's state, so the monitor replays them exactly."""

from __future__ import annotations

import copy
from datetime import timedelta
from pathlib import Path

from monitor_support import replayer_for

from domicile.ledger.entry import decode_entry
from domicile.runtime import open_runtime
from domicile.settings import Settings

EU = "Trusted Security Partner EU"


def test_grant_decisions_replay_exactly(tmp_path: Path) -> None:
    runtime = open_runtime(Settings(data_dir=tmp_path / "data"))
    try:
        store = runtime.principals
        svc = runtime.gateway.authenticate(store.add("svc", "Shop EU Ltd", "IE", {"service"}))
        analyst = runtime.gateway.authenticate(store.add("ana", EU, "IE", {"analyst"}))
        approver = runtime.gateway.authenticate(store.add("apo", EU, "IE", {"approver"}))
        sid, _ = runtime.gateway.register(svc, "IE", {"display_name": "Ana", "bio": "hi"})

        grant = runtime.grants.request(
            analyst, region="eu-ie", subjects=[sid], categories=["allowable"], purpose="legal",
            justification="case 7", duration=timedelta(minutes=10),
        )  # fmt: skip
        runtime.grants.decide(approver, grant.id, "approve")
        view = runtime.gateway.read(analyst, sid, ["display_name"], "legal")
        assert view.fields == {"display_name": "Ana"}
        log = runtime.logs["eu-ie"]
        entries = [decode_entry(log.entry(i)) for i in range(log.size)]
    finally:
        runtime.close()

    replayer = replayer_for(entries)
    granted = next(
        e for e in entries
        if e["kind"] == "decision" and e["input"]["context"].get("grant") == grant.id
    )  # fmt: skip
    assert granted["input"]["context"]["grant_state"]["approved"] is True
    assert replayer.replay(granted).mismatch == ""
    # The same allow, had the grant been revoked, is an allow against policy.
    forged = copy.deepcopy(granted)
    forged["input"]["context"]["grant_state"]["revoked"] = True
    assert replayer.replay(forged).mismatch == "allow-against-policy"
