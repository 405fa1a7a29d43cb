"""Bad input gets a 4xx problem document with a clear message, and nothing is written."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from domicile.runtime import Runtime

GOOD = {"email": "lukas@example.org", "display_name": "Lukas"}


def h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _total(runtime: Runtime) -> int:
    return sum(r.vault.count() for r in runtime.gateway.regions.values())


@pytest.mark.parametrize(
    ("body", "status", "code", "says"),
    [
        ({"country": "IE", "fields": {"shoe_size": 44}}, 400, "unknown-field", "shoe_size"),
        (
            {"country": "IE", "fields": {"email": "not-an-email"}},
            422,
            "invalid-field-value",
            "email",
        ),
        (
            {"country": "IE", "fields": {"follower_count": "many"}},
            422,
            "invalid-field-value",
            "follower_count",
        ),
        ({"country": "XX", "fields": GOOD}, 400, "unknown-country", "XX"),
        ({"country": "IE"}, 400, "invalid-input", "fields"),
        ({"country": "IE", "fields": GOOD, "extra": 1}, 400, "invalid-input", "extra"),
    ],
)
def test_bad_registration_is_a_problem_and_writes_nothing(
    api: TestClient,
    tokens: dict[str, str],
    runtime: Runtime,
    body: dict,
    status: int,
    code: str,
    says: str,
) -> None:
    response = api.post("/v1/subjects", json=body, headers=h(tokens["svc"]))
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == code
    assert problem["type"] == f"urn:domicile:problem:{code}"
    assert problem["status"] == status
    assert says in problem["detail"]
    assert "not-an-email" not in response.text  # rejected personal data is never echoed
    assert _total(runtime) == 0
    assert runtime.directory.counts() == {}


def test_oversize_body_is_413(api: TestClient, tokens: dict[str, str], runtime: Runtime) -> None:
    big = {"country": "IE", "fields": {"bio": "x" * 2_000_000}}
    response = api.post("/v1/subjects", json=big, headers=h(tokens["svc"]))
    assert response.status_code == 413
    assert response.json()["code"] == "payload-too-large"
    assert _total(runtime) == 0


def test_oversize_chunked_body_is_413(
    api: TestClient, tokens: dict[str, str], runtime: Runtime
) -> None:
    """A body sent without a declared length is counted as it streams."""
    body = json.dumps({"country": "IE", "fields": {"bio": "x" * 2_000_000}}).encode()
    chunks = (body[at : at + 65536] for at in range(0, len(body), 65536))
    response = api.post(
        "/v1/subjects",
        content=chunks,
        headers={**h(tokens["svc"]), "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["code"] == "payload-too-large"
    assert _total(runtime) == 0


def test_oversize_field_is_413(api: TestClient, tokens: dict[str, str], runtime: Runtime) -> None:
    response = api.post(
        "/v1/subjects",
        json={"country": "IE", "fields": {"bio": "x" * 70_000}},
        headers=h(tokens["svc"]),
    )
    assert response.status_code == 413
    assert _total(runtime) == 0


@pytest.mark.parametrize(
    ("headers", "says"),
    [
        ({}, "authorization"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "bearer"),
        ({"Authorization": "Bearer nonsense"}, "malformed"),
        ({"Authorization": "Bearer dom_" + "A" * 43}, "not known"),
    ],
)
def test_bad_tokens_are_401(api: TestClient, headers: dict[str, str], says: str) -> None:
    response = api.post("/v1/subjects", json={"country": "IE", "fields": GOOD}, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert says in response.json()["detail"].lower()


def test_revoked_token_is_401(api: TestClient, tokens: dict[str, str], runtime: Runtime) -> None:
    response = api.post(
        "/v1/subjects", json={"country": "IE", "fields": GOOD}, headers=h(tokens["revoked"])
    )
    assert response.status_code == 401
    assert "revoked" in response.json()["detail"]
    assert _total(runtime) == 0


def test_revocation_takes_effect_at_once(
    api: TestClient, tokens: dict[str, str], runtime: Runtime
) -> None:
    svc = h(tokens["svc_us"])
    assert api.get("/v1/regions", headers=svc).status_code == 200
    runtime.principals.revoke("svc-us")
    assert api.get("/v1/regions", headers=svc).status_code == 401


def test_unknown_and_malformed_subjects_are_404(api: TestClient, tokens: dict[str, str]) -> None:
    svc = h(tokens["svc"])
    for sid in ("0" * 32, "x" * 500, "ZZ%00"):
        response = api.get(f"/v1/subjects/{sid}?purpose=service", headers=svc)
        assert response.status_code == 404, sid
        assert response.json()["code"] == "subject-not-found"
    # A path that escapes the route matches no route at all.
    assert api.get("/v1/subjects/../../etc/passwd?purpose=service", headers=svc).status_code == 404


def test_read_needs_a_purpose_and_known_fields(api: TestClient, tokens: dict[str, str]) -> None:
    svc = h(tokens["svc"])
    sid = api.post("/v1/subjects", json={"country": "IE", "fields": GOOD}, headers=svc).json()["id"]
    assert api.get(f"/v1/subjects/{sid}", headers=svc).status_code == 400
    bad = api.get(f"/v1/subjects/{sid}?purpose=service&fields=email,shoe_size", headers=svc)
    assert bad.status_code == 400
    assert "shoe_size" in bad.json()["detail"]
    assert api.get(f"/v1/subjects/{sid}?purpose=curiosity", headers=svc).status_code == 403


def test_bad_update_writes_nothing(api: TestClient, tokens: dict[str, str]) -> None:
    svc = h(tokens["svc"])
    sid = api.post("/v1/subjects", json={"country": "IE", "fields": GOOD}, headers=svc).json()["id"]
    response = api.patch(
        f"/v1/subjects/{sid}",
        json={"fields": {"display_name": "Changed", "email": "broken"}},
        headers=svc,
    )
    assert response.status_code == 422
    after = api.get(f"/v1/subjects/{sid}?purpose=service", headers=svc).json()
    assert after["fields"]["display_name"] == "Lukas"
    assert after["version"] == 1


def test_erased_subject_refuses_every_operation(api: TestClient, tokens: dict[str, str]) -> None:
    svc = h(tokens["svc"])
    sid = api.post("/v1/subjects", json={"country": "IE", "fields": GOOD}, headers=svc).json()["id"]
    assert api.delete(f"/v1/subjects/{sid}", headers=svc).status_code == 204
    assert (
        api.patch(f"/v1/subjects/{sid}", json={"fields": {"bio": "x"}}, headers=svc).status_code
        == 410
    )
    assert api.get(f"/v1/subjects/{sid}/export", headers=svc).status_code == 410
    assert api.delete(f"/v1/subjects/{sid}", headers=svc).status_code == 410


def test_unknown_route_is_a_problem(api: TestClient) -> None:
    response = api.get("/v1/nothing-here")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


def test_openapi_describes_the_contract(api: TestClient) -> None:
    paths = api.get("/openapi.json").json()["paths"]
    for path in (
        "/v1/subjects",
        "/v1/subjects/{subject_id}",
        "/v1/subjects/{subject_id}/export",
        "/v1/subjects:batchGet",
    ):
        assert path in paths
