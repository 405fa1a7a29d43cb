"""Grant actions in the console go through the grant desk, as the API's do."""

from __future__ import annotations

import re

from console_support import World, csrf_of


def _request(world: World, who: str, categories: list[str]) -> str:
    with world.client() as api:
        made = api.post(
            "/v1/grants",
            json={"region": "eu-ie", "subjects": [world.subject_ie], "categories": categories,
                  "purpose": "security", "justification": "ticket 42", "duration_minutes": 60},
            headers=world.api(who),
        )  # fmt: skip
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


def _act(client, grant_id: str, action: str, csrf: str | None = None):  # type: ignore[no-untyped-def]
    page = client.get("/console/grants")
    return client.post(
        f"/console/grants/{grant_id}/{action}",
        data={"csrf": csrf if csrf is not None else csrf_of(page.text)},
        follow_redirects=False,
    )


def test_two_approvers_approve_then_one_revokes(world: World) -> None:
    grant_id = _request(world, "analyst-ie", ["restricted"])
    first = world.login("approver-ie")
    assert f'data-grant="{grant_id}"' in first.get("/console/grants").text
    assert _act(first, grant_id, "approve").status_code == 303
    second = world.login("approver2-ie")
    assert _act(second, grant_id, "approve").status_code == 303
    assert world.runtime.grants.store.get(grant_id).state == "approved"
    active = second.get("/console/grants").text
    assert re.search(rf'<table id="active">.*data-grant="{grant_id}"', active, re.S)
    assert _act(second, grant_id, "revoke").status_code == 303
    assert world.runtime.grants.store.get(grant_id).state == "revoked"


def test_self_approval_is_refused_exactly_as_the_api_refuses_it(world: World) -> None:
    grant_id = _request(world, "approver-ie", ["allowable"])
    with world.client() as api:
        by_api = api.post(f"/v1/grants/{grant_id}:approve", headers=world.api("approver-ie"))
    assert by_api.status_code == 403
    client = world.login("approver-ie")
    by_console = _act(client, grant_id, "approve")
    assert by_console.status_code == 403
    assert by_api.json()["detail"] in by_console.text
    assert world.runtime.grants.store.get(grant_id).state == "pending"


def test_an_unqualified_principal_cannot_approve(world: World) -> None:
    grant_id = _request(world, "analyst-ie", ["allowable"])
    client = world.login("svc-eu")
    assert f'data-grant="{grant_id}"' not in client.get("/console/grants").text
    response = _act(client, grant_id, "approve")
    assert response.status_code == 403
    assert world.runtime.grants.store.get(grant_id).state == "pending"


def test_a_grant_action_without_the_sessions_csrf_token_is_refused(world: World) -> None:
    grant_id = _request(world, "analyst-ie", ["allowable"])
    client = world.login("approver-ie")
    response = _act(client, grant_id, "approve", csrf="forged")
    assert response.status_code == 403
    assert world.runtime.grants.store.get(grant_id).state == "pending"
    other = world.login("approver2-ie")
    stolen = csrf_of(other.get("/console/grants").text)
    assert _act(client, grant_id, "approve", csrf=stolen).status_code == 403
    assert world.runtime.grants.store.get(grant_id).state == "pending"


def test_an_unknown_action_is_a_clear_400(world: World) -> None:
    grant_id = _request(world, "analyst-ie", ["allowable"])
    client = world.login("approver-ie")
    response = _act(client, grant_id, "bless")
    assert response.status_code == 400
    assert "no grant action" in response.text
