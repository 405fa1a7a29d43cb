"""Helpers of the console's unit tests: the world they share, logging in, CSRF fields."""

from __future__ import annotations

import re
from dataclasses import dataclass

import httpx
from fastapi.testclient import TestClient

from domicile.runtime import Runtime

EU_ENTITY = "Trusted Security Partner EU"
PRINCIPALS = {
    "svc-eu": ("Shop EU Ltd", "IE", {"service"}),
    "svc-us": ("Shop US Inc", "US", {"service"}),
    "admin": ("operator", "IE", {"admin"}),
    "analyst-ie": (EU_ENTITY, "IE", {"analyst"}),
    "approver-ie": (EU_ENTITY, "IE", {"approver"}),
    "approver2-ie": (EU_ENTITY, "DE", {"approver"}),
}
SUBJECTS = 60


@dataclass
class World:
    app: object
    runtime: Runtime
    tokens: dict[str, str]
    subject_ie: str

    def api(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def client(self) -> TestClient:
        """A fresh browser-like client (its own cookies)."""
        return TestClient(self.app, raise_server_exceptions=False)  # type: ignore[arg-type]

    def login(self, who: str) -> TestClient:
        client = self.client()
        client.__enter__()
        response = login(client, self.tokens[who])
        assert response.status_code == 303, response.text
        return client


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]*)"', html)
    assert match, "no csrf field in the form"
    return match.group(1)


def login(client: TestClient, token: str, next_url: str = "/console/overview") -> httpx.Response:
    form = client.get("/console/login")
    return client.post(
        "/console/login",
        data={"csrf": csrf_of(form.text), "token": token, "next": next_url},
        follow_redirects=False,
    )
