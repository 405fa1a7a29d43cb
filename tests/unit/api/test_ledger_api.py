"""The ledger through the API: every decision recorded, proofs served, no record no service."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from domicile.api.app import create_app
from domicile.errors import StorageError
from domicile.ledger.entry import decode_entry
from domicile.ledger.merkle import leaf_hash, verify_consistency, verify_inclusion
from domicile.ledger.note import parse_verifier_key
from domicile.ledger.proof_bundle import verify_bundle
from domicile.ledger.tiles import bundle_path, decode_bundle
from domicile.runtime import Runtime, open_runtime
from domicile.settings import Settings

PERSON = {"full_name": "Ingrid Hansen", "email": "ingrid.hansen@example.org", "bio": "skier"}


def h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def entries(runtime: Runtime, region: str) -> list[dict]:
    log = runtime.logs[region]
    return [decode_entry(log.entry(i)) for i in range(log.size)]


def test_every_decision_allow_and_deny_is_in_the_ledger(
    api: TestClient, tokens: dict[str, str], runtime: Runtime
) -> None:
    svc, admin = h(tokens["svc"]), h(tokens["admin"])
    sid = api.post("/v1/subjects", json={"country": "NO", "fields": PERSON}, headers=svc).json()[
        "id"
    ]
    assert api.get(f"/v1/subjects/{sid}?purpose=support", headers=svc).status_code == 200
    assert api.get(f"/v1/subjects/{sid}?purpose=support", headers=admin).status_code == 403
    assert api.get(f"/v1/subjects/{sid}?purpose=gossip", headers=svc).status_code == 403
    api.post("/v1/subjects:batchGet", json={"ids": [sid, sid], "purpose": "support"}, headers=svc)
    assert (
        api.patch(f"/v1/subjects/{sid}", json={"fields": {"bio": "x"}}, headers=svc).status_code
        == 200
    )
    assert api.delete(f"/v1/subjects/{sid}", headers=svc).status_code == 204

    log = entries(runtime, "eu-no")
    decisions = [e for e in log if e["kind"] == "decision"]
    summary = [(e["action"], e["result"], e["input"]["principal"]["id"]) for e in decisions]
    assert summary == [
        ("register", "allow", "svc-eu"),
        ("read", "allow", "svc-eu"),
        ("read", "deny", "admin"),
        ("read", "deny", "svc-eu"),
        ("read", "allow", "svc-eu"),  # a batch decides each distinct subject once
        ("write", "allow", "svc-eu"),
        ("erase", "allow", "svc-eu"),
    ]
    refs = {e["input"]["resource"]["subject_ref"] for e in decisions}
    assert len(refs) == 1  # one subject, one keyed reference
    assert sid not in json.dumps(log)  # the subject id itself never appears
    assert [e["kind"] for e in log].count("erasure") == 1
    for e in decisions:  # enough to replay: who, what, where, why, and the outcome
        assert {"decision_id", "action", "result", "policy_ids", "input"} <= set(e)
        assert e["input"]["resource"]["region"] == "eu-no"
    blob = json.dumps(log)
    for value in PERSON.values():
        assert value not in blob


def test_ledger_endpoints_serve_verifiable_proofs(api: TestClient, tokens: dict[str, str]) -> None:
    svc = h(tokens["svc"])
    for _ in range(5):
        api.post("/v1/subjects", json={"country": "IE", "fields": PERSON}, headers=svc)
    base = "/v1/regions/eu-ie/log"
    vkey = api.get(base + "/key").text.strip()
    verifier = parse_verifier_key(vkey)
    bundle = api.get(base + "/bundle/3")
    assert bundle.status_code == 200
    checkpoint, entry = verify_bundle(bundle.text, [verifier])
    assert checkpoint.size > 3
    by_index = api.get(base + f"/proof/inclusion?index=3&size={checkpoint.size}").json()
    leaf = base64.b64decode(by_index["leaf_hash"])
    assert leaf == leaf_hash(entry)
    verify_inclusion(
        leaf,
        3,
        checkpoint.size,
        [base64.b64decode(p) for p in by_index["proof"]],
        checkpoint.root_hash,
    )
    by_hash = api.get(base + "/proof/inclusion", params={"leaf_hash": by_index["leaf_hash"]}).json()
    assert by_hash["index"] == 3
    cons = api.get(base + f"/proof/consistency?size1=2&size2={checkpoint.size}").json()
    verify_consistency(
        2,
        checkpoint.size,
        [base64.b64decode(p) for p in cons["proof"]],
        base64.b64decode(cons["root1"]),
        checkpoint.root_hash,
    )
    tail = api.get(base + "/entries?count=2").json()
    assert len(tail) == 2
    assert tail[1]["index"] == tail[0]["index"] + 1
    assert tail[1]["entry"]["kind"] == "decision"


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/v1/regions/mars/log/checkpoint", 400),
        ("/v1/regions/eu-ie/log/bundle/999999", 404),
        ("/v1/regions/eu-ie/log/proof/inclusion?index=0&size=999999", 404),
        ("/v1/regions/eu-ie/log/proof/inclusion?leaf_hash=bm90LWEtaGFzaA==", 400),
        ("/v1/regions/eu-ie/log/proof/inclusion", 400),
        ("/v1/regions/eu-ie/log/tile/0/001", 404),
        ("/v1/regions/eu-ie/log/tile/0/1", 400),
        ("/v1/regions/eu-ie/log/tile/entries/000.p/0", 400),
    ],
)
def test_bad_ledger_requests_are_problems(api: TestClient, path: str, status: int) -> None:
    response = api.get(path)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"


def test_a_request_that_cannot_be_recorded_is_not_served(
    api: TestClient, tokens: dict[str, str], runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = h(tokens["svc"])
    sid = api.post("/v1/subjects", json={"country": "IE", "fields": PERSON}, headers=svc).json()[
        "id"
    ]

    def broken(entries: object) -> int:
        raise StorageError("disk full")

    monkeypatch.setattr(runtime.logs["eu-ie"], "append", broken)
    response = api.get(f"/v1/subjects/{sid}?purpose=support", headers=svc)
    assert response.status_code == 503
    assert response.json()["code"] == "recording-failed"
    assert PERSON["email"] not in response.text
    assert (
        api.patch(f"/v1/subjects/{sid}", json={"fields": {"bio": "y"}}, headers=svc).status_code
        == 503
    )
    monkeypatch.undo()
    after = api.get(f"/v1/subjects/{sid}?purpose=support", headers=svc).json()
    assert after["fields"]["bio"] == "skier"


def test_a_read_whose_unwrap_cannot_be_recorded_is_not_served(
    api: TestClient, tokens: dict[str, str], runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The custodian hands out no key before its own unwrap record is durable, on the
    event-loop read path as on the thread path."""
    svc = h(tokens["svc"])
    sid = api.post("/v1/subjects", json={"country": "IE", "fields": PERSON}, headers=svc).json()[
        "id"
    ]
    custodian = runtime.gateway.regions["eu-ie"].custodian

    def broken(records: object) -> int:
        raise StorageError("keyring disk full")

    monkeypatch.setattr(custodian._unwrap_log, "_write_fn", broken)  # type: ignore[attr-defined]
    response = api.get(f"/v1/subjects/{sid}?purpose=support", headers=svc)
    assert response.status_code == 503, response.text
    assert PERSON["email"] not in response.text
    monkeypatch.undo()
    assert api.get(f"/v1/subjects/{sid}?purpose=support", headers=svc).json()["fields"]["email"]


def test_custodian_unwraps_are_served_for_the_monitor(
    api: TestClient, tokens: dict[str, str], runtime: Runtime
) -> None:
    svc = h(tokens["svc"])
    sid = api.post("/v1/subjects", json={"country": "IE", "fields": PERSON}, headers=svc).json()[
        "id"
    ]
    api.get(f"/v1/subjects/{sid}?purpose=support", headers=svc)
    api.get(f"/v1/subjects/{sid}?purpose=support", headers=svc)
    records = api.get("/v1/regions/eu-ie/log/unwraps").json()
    assert len(records) == 2
    assert records[0]["subject_ref"] == records[1]["subject_ref"]
    assert sid not in str(records)
    entry = decode_entry(runtime.logs["eu-ie"].entry(records[0]["ledger_index"]))
    assert entry["decision_id"] == records[0]["decision_id"]
    assert api.get(f"/v1/regions/eu-ie/log/unwraps?after={records[0]['id']}").json() == records[1:]


def test_entries_another_process_wrote_are_served(tmp_path: Path) -> None:
    """A second process on the same store (a migration run, another gateway) signs a
    checkpoint past this process's view: its entries and proofs are served, not 404."""
    settings = Settings(data_dir=tmp_path / "gw", checkpoint_interval=3600)
    first = open_runtime(settings)
    try:
        with TestClient(create_app(settings, first)) as api:
            before = first.logs["eu-ie"].size
            second = open_runtime(settings)  # logs its start entries and signs them
            try:
                size = second.logs["eu-ie"].size
            finally:
                second.close()
            assert size > before == first.logs["eu-ie"].size
            note = api.get("/v1/regions/eu-ie/log/checkpoint").text
            assert note.splitlines()[1] == str(size)
            got = api.get(f"/v1/regions/eu-ie/log/{bundle_path(0, size)}")
            assert got.status_code == 200, got.text
            assert len(decode_bundle(got.content, size)) == size
            proof = api.get(f"/v1/regions/eu-ie/log/proof/consistency?size1={before}&size2={size}")
            assert proof.status_code == 200, proof.text
            assert api.get(f"/v1/regions/eu-ie/log/bundle/{size - 1}").status_code == 200
    finally:
        first.close()
