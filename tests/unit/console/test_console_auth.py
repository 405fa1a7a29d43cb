"""Console login, sessions, CSRF and refusals."""

from __future__ import annotations

import re

from console_support import World, csrf_of, login


def test_every_page_needs_a_login(world: World) -> None:
    with world.client() as client:
        for page in ("overview", "flows", "access", "grants", "migration", "access/eu-ie/0"):
            response = client.get(f"/console/{page}", follow_redirects=False)
            assert response.status_code == 303
            assert response.headers["location"].startswith("/console/login?next=%2Fconsole%2F")


def test_login_sets_a_strict_httponly_session_cookie(world: World) -> None:
    with world.client() as client:
        response = login(client, world.tokens["admin"], "/console/flows")
        assert response.status_code == 303
        assert response.headers["location"] == "/console/flows"
        cookie = next(
            c for c in response.headers.get_list("set-cookie") if c.startswith("domicile_console=")
        )
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie
        assert world.tokens["admin"] not in cookie  # only a random session id
        page = client.get("/console/overview")
        assert page.status_code == 200
        assert 'id="who">admin' in page.text


def test_a_bad_token_is_refused_and_opens_no_session(world: World) -> None:
    with world.client() as client:
        response = login(client, "not-a-token")
        assert response.status_code == 401
        assert "that token is not valid" in response.text
        assert "domicile_console=" not in response.headers.get("set-cookie", "")
        assert client.get("/console/overview", follow_redirects=False).status_code == 303


def test_login_without_the_forms_csrf_token_is_refused(world: World) -> None:
    with world.client() as client:
        client.get("/console/login")
        response = client.post(
            "/console/login",
            data={"csrf": "forged", "token": world.tokens["admin"]},
            follow_redirects=False,
        )
        assert response.status_code == 403
        assert client.get("/console/overview", follow_redirects=False).status_code == 303


def test_open_redirects_are_not_followed(world: World) -> None:
    with world.client() as client:
        response = login(client, world.tokens["admin"], "https://evil.example/")
        assert response.headers["location"] == "/console/overview"


def test_logout_needs_csrf_and_ends_the_session(world: World) -> None:
    client = world.login("admin")
    page = client.get("/console/overview")
    refused = client.post("/console/logout", data={"csrf": "x"}, follow_redirects=False)
    assert refused.status_code == 403
    assert client.get("/console/overview").status_code == 200
    done = client.post("/console/logout", data={"csrf": csrf_of(page.text)}, follow_redirects=False)
    assert done.status_code == 303
    assert client.get("/console/overview", follow_redirects=False).status_code == 303
    client.__exit__(None, None, None)


def test_a_revoked_principal_loses_its_session(world: World) -> None:
    token = world.runtime.principals.add("temp-officer", "X", "IE", {"analyst"})
    with world.client() as client:
        assert login(client, token).status_code == 303
        assert client.get("/console/overview").status_code == 200
        world.runtime.principals.revoke("temp-officer")
        assert client.get("/console/overview", follow_redirects=False).status_code == 303


def test_a_principal_without_rights_gets_a_clear_403_page(world: World) -> None:
    client = world.login("svc-eu")
    response = client.get("/console/migration")
    assert response.status_code == 403
    assert "Not allowed" in response.text
    assert "svc-eu" in response.text
    admin = world.login("admin")
    assert admin.get("/console/migration").status_code == 200


def test_pages_answer_with_strict_security_headers(world: World) -> None:
    client = world.login("admin")
    response = client.get("/console/overview")
    assert response.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert re.search(r"script-src|default-src 'none'", response.headers["content-security-policy"])
