"""The subject API end to end (in process), on SQLite and on PostgreSQL."""

from __future__ import annotations

import threading

from fastapi.testclient import TestClient

from domicile.api.models import BatchGetResult
from domicile.runtime import Runtime
from domicile.vault.store import SubjectState

PERSON = {
    "full_name": "Aoife Murphy",
    "email": "aoife.murphy@example.org",
    "phone": "+353861234567",
    "birth_date": "1990-04-01",
    "display_name": "Aoife",
    "follower_count": 12,
}


def h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def register(api: TestClient, token: str, country: str = "IE", **fields: object) -> dict:
    response = api.post(
        "/v1/subjects", json={"country": country, "fields": fields or PERSON}, headers=h(token)
    )
    assert response.status_code == 201, response.text
    return response.json()


def test_register_read_update_export_erase(api: TestClient, tokens: dict[str, str]) -> None:
    svc = h(tokens["svc"])
    created = register(api, tokens["svc"])
    assert created["home_region"] == "eu-ie"
    sid = created["id"]

    read = api.get(f"/v1/subjects/{sid}?fields=email,phone&purpose=support", headers=svc)
    assert read.status_code == 200
    assert read.json() == {
        "id": sid,
        "home_region": "eu-ie",
        "version": 1,
        "fields": {"email": "aoife.murphy@example.org", "phone": "+353861234567"},
        "withheld": {},
    }
    assert read.headers["etag"] == '"1"'

    patched = api.patch(
        f"/v1/subjects/{sid}",
        json={"fields": {"email": "a.m@example.org", "phone": None}},
        headers=svc,
    )
    assert patched.json() == {"id": sid, "version": 2}
    after = api.get(f"/v1/subjects/{sid}?purpose=service", headers=svc).json()
    assert after["fields"]["email"] == "a.m@example.org"
    assert "phone" not in after["fields"]

    export = api.get(f"/v1/subjects/{sid}/export", headers=svc).json()
    assert export["fields"]["full_name"] == "Aoife Murphy"
    assert export["home_region"] == "eu-ie"
    assert export["version"] == 2

    assert api.delete(f"/v1/subjects/{sid}", headers=svc).status_code == 204
    gone = api.get(f"/v1/subjects/{sid}?purpose=service", headers=svc)
    assert gone.status_code == 410
    assert gone.headers["content-type"] == "application/problem+json"
    assert gone.json()["code"] == "subject-erased"


def test_if_match_protects_read_modify_write(api: TestClient, tokens: dict[str, str]) -> None:
    svc = h(tokens["svc"])
    sid = register(api, tokens["svc"])["id"]
    ok = api.patch(
        f"/v1/subjects/{sid}",
        json={"fields": {"follower_count": 13}},
        headers={**svc, "If-Match": '"1"'},
    )
    assert ok.status_code == 200
    stale = api.patch(
        f"/v1/subjects/{sid}",
        json={"fields": {"follower_count": 99}},
        headers={**svc, "If-Match": '"1"'},
    )
    assert stale.status_code == 412
    fields = api.get(f"/v1/subjects/{sid}?purpose=service", headers=svc).json()["fields"]
    assert fields["follower_count"] == 13


def test_residency_each_subject_only_in_its_home_vault(
    api: TestClient, tokens: dict[str, str], runtime: Runtime
) -> None:
    countries = [
        "IE",
        "DE",
        "FR",
        "ES",
        "IT",
        "PL",
        "NL",
        "SE",
        "NO",
        "DK",
        "FI",
        "IS",
        "GB",
        "CH",
        "US",
        "SG",
        "JP",
        "BR",
        "IN",
        "ZA",
        "AU",
        "CA",
    ]
    expected = {
        "IE": "eu-ie",
        "NO": "eu-no",
        "SE": "eu-no",
        "GB": "eu-ie",
        "US": "us",
        "JP": "ap-sg",
        "BR": "ap-sg",
    }
    placed = {}
    for country in countries:
        created = register(api, tokens["svc"], country)
        placed[created["id"]] = created["home_region"]
        if country in expected:
            assert created["home_region"] == expected[country]
    assert set(placed.values()) == {"eu-ie", "eu-no", "us", "ap-sg"}
    for sid, home in placed.items():
        for name, region in runtime.gateway.regions.items():
            state = region.vault.state(sid)
            assert state == (SubjectState.ACTIVE if name == home else None), (sid, name)
    counts = {
        r["name"]: r["subjects"] for r in api.get("/v1/regions", headers=h(tokens["svc"])).json()
    }
    assert sum(counts.values()) == len(countries)


def test_batch_get_decides_each_record(api: TestClient, tokens: dict[str, str]) -> None:
    svc = h(tokens["svc"])
    a = register(api, tokens["svc"], "IE")["id"]
    b = register(api, tokens["svc"], "US")["id"]
    c = register(api, tokens["svc"], "NO")["id"]
    api.delete(f"/v1/subjects/{c}", headers=svc)
    body = {"ids": [a, "f" * 32, b, c, "not-an-id"], "fields": ["email"], "purpose": "support"}
    items = api.post("/v1/subjects:batchGet", json=body, headers=svc).json()["items"]
    assert [i["id"] for i in items] == body["ids"]
    assert items[0]["subject"]["fields"] == {"email": PERSON["email"]}
    # An Irish service does not reach a US subject: decided per record, not per batch.
    assert items[2]["error"]["status"] == 403
    assert items[1]["error"]["status"] == 404
    assert items[3]["error"]["status"] == 410
    assert items[4]["error"]["status"] == 404


def test_batch_get_answers_in_its_documented_shape(api: TestClient, tokens: dict[str, str]) -> None:
    svc = h(tokens["svc"])
    a = register(api, tokens["svc"], "IE")["id"]
    body = {"ids": [a, "f" * 32], "fields": ["email", "phone"], "purpose": "support"}
    response = api.post("/v1/subjects:batchGet", json=body, headers=svc)
    assert response.headers["content-type"] == "application/json"
    # The route builds its answer without the response model; it must still be one.
    result = BatchGetResult.model_validate_json(response.content)
    assert response.json() == result.model_dump()
    found, missing = result.items
    assert found.subject is not None
    assert found.error is None
    assert found.subject.fields == {"email": PERSON["email"], "phone": PERSON["phone"]}
    assert missing.subject is None
    assert missing.error is not None
    assert missing.error.code == "subject-not-found"
    operation = api.get("/openapi.json").json()["paths"]["/v1/subjects:batchGet"]["post"]
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/BatchGetResult"}


def test_admin_never_reads_personal_data(api: TestClient, tokens: dict[str, str]) -> None:
    sid = register(api, tokens["svc"])["id"]
    admin = h(tokens["admin"])
    for response in (
        api.get(f"/v1/subjects/{sid}?purpose=support", headers=admin),
        api.get(f"/v1/subjects/{sid}/export", headers=admin),
        api.post("/v1/subjects:batchGet", json={"ids": [sid], "purpose": "support"}, headers=admin),
    ):
        assert response.status_code in (200, 403)
        assert PERSON["email"] not in response.text
    assert api.get(f"/v1/subjects/{sid}?purpose=support", headers=admin).status_code == 403
    assert api.get("/v1/principals", headers=admin).status_code == 200
    assert api.get("/v1/principals", headers=h(tokens["svc"])).status_code == 403


def test_relocation_moves_copy_verifies_and_shreds(
    api: TestClient, tokens: dict[str, str], runtime: Runtime
) -> None:
    svc = h(tokens["svc"])
    sid = register(api, tokens["svc"], "IE")["id"]
    moved = api.post(f"/v1/subjects/{sid}:relocate", json={"country": "US"}, headers=svc)
    assert moved.json() == {"id": sid, "home_region": "us"}
    regions = runtime.gateway.regions
    assert regions["eu-ie"].vault.state(sid) is SubjectState.RELOCATED
    assert regions["us"].vault.state(sid) is SubjectState.ACTIVE
    # Now a US subject: the Irish service no longer reaches it, a US service does.
    assert api.get(f"/v1/subjects/{sid}?purpose=service", headers=svc).status_code == 403
    svc_us = h(tokens["svc_us"])
    read = api.get(f"/v1/subjects/{sid}?purpose=service", headers=svc_us).json()
    assert read["home_region"] == "us"
    assert read["fields"]["email"] == PERSON["email"]
    back = api.post(f"/v1/subjects/{sid}:relocate", json={"country": "SE"}, headers=svc_us)
    assert back.json()["home_region"] == "eu-no"
    assert regions["us"].vault.state(sid) is SubjectState.RELOCATED
    assert runtime.directory.pending() == []


def test_a_read_waiting_on_its_store_holds_up_no_other_request(
    api: TestClient, runtime: Runtime, tokens: dict[str, str], backend: str
) -> None:
    """On PostgreSQL a read's lookups are network round trips: while one read waits on
    its store, the server still answers other requests (on SQLite they are local and
    stay on the event loop)."""
    assert runtime.reads_wait_on_network is (backend == "postgres")
    if backend != "postgres":
        return
    sid = register(api, tokens["svc"])["id"]
    held, released = threading.Event(), threading.Event()
    lookup = runtime.directory.lookup

    def slow_lookup(subject_id: str) -> object:
        held.set()
        released.wait()  # the round trip that does not come back yet
        return lookup(subject_id)

    runtime.directory.lookup = slow_lookup  # type: ignore[method-assign]
    reader = threading.Thread(
        target=lambda: api.get(f"/v1/subjects/{sid}?purpose=support", headers=h(tokens["svc"]))
    )
    reader.start()
    timer = threading.Timer(5, released.set)  # it comes back in 5 s at the latest
    timer.start()
    try:
        assert held.wait(10)
        answered = api.get("/v1/regions", headers=h(tokens["admin"]))
        assert answered.status_code == 200
        assert not released.is_set()  # answered while the read still waited
    finally:
        timer.cancel()
        released.set()
        reader.join()
        runtime.directory.lookup = lookup  # type: ignore[method-assign]
