"""No code path decrypts without a logged decision: every unwrap matches an allow entry."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from domicile.ledger.entry import decode_entry
from domicile.runtime import Runtime


def h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("backend", ["sqlite"])
def test_every_unwrap_matches_a_recorded_allow(
    api: TestClient, tokens: dict[str, str], runtime: Runtime
) -> None:
    svc, admin = h(tokens["svc"]), h(tokens["admin"])
    ids = [
        api.post(
            "/v1/subjects",
            json={"country": c, "fields": {"email": f"{c}@example.org"}},
            headers=svc,
        ).json()["id"]
        for c in ("IE", "DE", "FR")
    ]
    api.get(f"/v1/subjects/{ids[0]}?purpose=support", headers=svc)
    api.get(f"/v1/subjects/{ids[0]}?purpose=support", headers=admin)  # denied: no unwrap
    api.patch(f"/v1/subjects/{ids[1]}", json={"fields": {"bio": "hi"}}, headers=svc)
    api.get(f"/v1/subjects/{ids[1]}/export", headers=svc)
    api.post("/v1/subjects:batchGet", json={"ids": ids, "purpose": "service"}, headers=svc)
    api.post(f"/v1/subjects/{ids[2]}:relocate", json={"country": "US"}, headers=svc)

    for region, rt in runtime.gateway.regions.items():
        log = runtime.logs[region]
        entries = [decode_entry(log.entry(i)) for i in range(log.size)]
        for record in rt.custodian.unwraps():
            entry = entries[record.ledger_index]
            assert entry["kind"] == "decision"
            assert entry["result"] == "allow"
            assert entry["decision_id"] == record.decision_id
            assert entry["input"]["resource"]["subject_ref"] == record.subject_ref
    eu = runtime.gateway.regions["eu-ie"].custodian.unwraps()
    # read + write + export + 3 batch reads + relocation copy = 7 unwraps in eu-ie
    assert len(eu) == 7
