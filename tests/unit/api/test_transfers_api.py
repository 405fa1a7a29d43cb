"""Transfers end to end (issue 5): one EU subject read in region, from the US under an
agreement and from a country of concern; exported to an analytics destination; and
re-identified in region — each response and each ledger entry checked. Then the ways a
transfer is refused: unknown, untrusted destination, no agreement, expired agreement,
bulk threshold, k-anonymity."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from domicile.api.app import create_app
from domicile.cli import main
from domicile.client import Client
from domicile.errors import AccessDenied
from domicile.ledger.entry import decode_entry
from domicile.runtime import Runtime, open_runtime
from domicile.settings import Settings

EU_ENTITY = "Trusted Security Partner EU"
PERSON = {
    "full_name": "Sofia Rossi",
    "email": "sofia.rossi@example.org",
    "birth_date": "1991-02-03",
    "display_name": "Sofia",
    "bio": "climbs in the Dolomites",
    "coarse_location": "IE",
    "follower_count": 40,
    "username": "sofiar",
}
SECRETS = ("Sofia Rossi", "sofia.rossi@example.org", "1991-02-03", "Dolomites")
PRINCIPALS = {
    "admin": ("operator", "IE", {"admin"}),
    "svc-eu": ("Shop EU Ltd", "IE", {"service"}),
    "officer-ie": (EU_ENTITY, "IE", {"officer"}),
    "approver-ie": (EU_ENTITY, "IE", {"approver"}),
    "approver2-ie": (EU_ENTITY, "DE", {"approver"}),
    "analyst-us": ("Analytics Inc", "US", {"analyst"}),
    "analyst-ru": ("Analytics Inc", "RU", {"analyst"}),
    "unknown-us": ("Unknown Corp", "US", {"analyst"}),
    "shady-us": ("Shady Corp", "US", {"analyst"}),
    "other-us": ("Other Inc", "US", {"analyst"}),
    "expired-us": ("Expired Co", "US", {"analyst"}),
    "tiny-us": ("Tiny Co", "US", {"analyst"}),
}
NOW = datetime.now(UTC)


def _agreement(agreement_id: str, entity: str, fields: dict[str, Any], **extra: Any) -> dict:
    return {
        "id": agreement_id,
        "destination_entity": entity,
        "destination_country": "US",
        "purpose": "analytics",
        "legal_basis": "SCC-2021/914 module 1",
        "tia_reference": "TIA-2030-004",
        "fields": fields,
        "valid_from": (NOW - timedelta(days=1)).isoformat(),
        "valid_until": (NOW + timedelta(days=365)).isoformat(),
        **extra,
    }


ANALYTICS_FIELDS = {
    "display_name": "pseudonymise",
    "bio": "tokenise",
    "follower_count": None,
    "coarse_location": None,
    "birth_date": None,
    "email": "pseudonymise",
}


@dataclass
class World:
    api: TestClient
    runtime: Runtime
    tokens: dict[str, str]
    sofia: str
    crowd: list[str]
    outlier: str

    def h(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def read(self, who: str, sid: str, fields: str, purpose: str):
        return self.api.get(
            f"/v1/subjects/{sid}?fields={fields}&purpose={purpose}", headers=self.h(who)
        )

    def ledger(self, region: str = "eu-ie") -> list[dict]:
        log = self.runtime.logs[region]
        return [decode_entry(log.entry(i)) for i in range(log.size)]

    def raw_ledger(self, region: str = "eu-ie") -> bytes:
        log = self.runtime.logs[region]
        return b"\n".join(log.entry(i) for i in range(log.size))


def _setup(api: TestClient, h: Any) -> None:
    for entity, status in [
        ("Analytics Inc", "trusted"),
        ("Shady Corp", "untrusted"),
        ("Other Inc", "trusted"),
        ("Expired Co", "trusted"),
        ("Tiny Co", "trusted"),
    ]:
        r = api.put(
            f"/v1/destinations/{entity}", json={"country": "US", "status": status}, headers=h
        )
        assert r.status_code == 200, r.text
    bodies = [
        _agreement("eu-us-analytics", "Analytics Inc", ANALYTICS_FIELDS),
        _agreement("shady", "Shady Corp", {"display_name": None}),
        _agreement(
            "old-deal",
            "Expired Co",
            {"display_name": None},
            valid_from=(NOW - timedelta(days=30)).isoformat(),
            valid_until=(NOW - timedelta(days=1)).isoformat(),
        ),
        _agreement("tiny", "Tiny Co", {"display_name": None}, max_subjects_per_year=1),
    ]
    for body in bodies:
        r = api.post("/v1/agreements", json=body, headers=h)
        assert r.status_code == 201, r.text


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    settings = Settings(data_dir=Path(tmp_path_factory.mktemp("transfers")) / "data")
    runtime = open_runtime(settings)
    tokens = {pid: runtime.principals.add(pid, e, c, r) for pid, (e, c, r) in PRINCIPALS.items()}
    with TestClient(create_app(settings, runtime), raise_server_exceptions=False) as api:
        svc = {"Authorization": f"Bearer {tokens['svc-eu']}"}

        def register(person: dict) -> str:
            r = api.post("/v1/subjects", json={"country": "IE", "fields": person}, headers=svc)
            assert r.status_code == 201, r.text
            return str(r.json()["id"])

        sofia = register(PERSON)
        crowd = [
            register({**PERSON, "display_name": f"p{i}", "email": f"p{i}@example.org"})
            for i in range(7)
        ]
        outlier = register({**PERSON, "birth_date": "1931-05-05", "coarse_location": "FR"})
        _setup(api, {"Authorization": f"Bearer {tokens['admin']}"})
        yield World(api, runtime, tokens, sofia, crowd, outlier)
    runtime.close()


# -- agreements and destinations ------------------------------------------------------------


def test_agreement_versions_are_in_every_region_ledger(world: World) -> None:
    for region in world.runtime.topology.regions:
        versions = [
            e["record"]
            for e in world.ledger(region)
            if e["kind"] == "transfer" and e.get("event") == "agreement-version"
        ]
        ids = {(v["id"], v["version"]) for v in versions}
        assert ("eu-us-analytics", 1) in ids
        assert all(len(v["digest"]) == 64 for v in versions)
        destinations = [
            e["record"]["entity"]
            for e in world.ledger(region)
            if e.get("event") == "destination-version"
        ]
        assert "Analytics Inc" in destinations


def test_only_administrators_manage_agreements(world: World) -> None:
    body = _agreement("sneaky", "Analytics Inc", {"display_name": None})
    r = world.api.post("/v1/agreements", json=body, headers=world.h("analyst-us"))
    assert r.status_code == 403
    r = world.api.put(
        "/v1/destinations/Sneaky Co",
        json={"country": "US", "status": "trusted"},
        headers=world.h("officer-ie"),
    )
    assert r.status_code == 403
    assert world.api.get("/v1/agreements", headers=world.h("svc-eu")).status_code == 403
    listed = world.api.get("/v1/agreements", headers=world.h("admin")).json()
    assert {a["id"] for a in listed} >= {"eu-us-analytics", "tiny"}


def test_amend_needs_the_version_seen(world: World) -> None:
    body = _agreement("amended", "Other Inc", {"follower_count": None}, purpose="marketing")
    admin = world.h("admin")
    assert world.api.post("/v1/agreements", json=body, headers=admin).status_code == 201
    assert world.api.put("/v1/agreements/amended", json=body, headers=admin).status_code == 400
    stale = world.api.put("/v1/agreements/amended", json=body, headers={**admin, "If-Match": '"7"'})
    assert stale.status_code == 412
    ok = world.api.put("/v1/agreements/amended", json=body, headers={**admin, "If-Match": '"1"'})
    assert ok.status_code == 200
    assert ok.json()["version"] == 2
    end = world.api.post("/v1/agreements/amended:terminate", headers={**admin, "If-Match": '"2"'})
    assert end.json()["terminated"] is True
    versions = world.api.get("/v1/agreements/amended", headers=admin).json()
    assert [v["version"] for v in versions] == [1, 2, 3]


def test_an_agreement_cannot_loosen_the_catalog(world: World) -> None:
    body = _agreement("loose", "Analytics Inc", {"email": "keep"})
    r = world.api.post("/v1/agreements", json=body, headers=world.h("admin"))
    assert r.status_code == 422
    assert "less strict" in r.json()["detail"]


def test_an_agreement_the_policies_would_never_serve_is_refused(world: World) -> None:
    h = world.h("admin")
    r = world.api.put("/v1/destinations/Bear Co", json={"country": "RU", "status": "trusted"},
                      headers=h)  # fmt: skip
    assert r.status_code == 200, r.text
    body = _agreement("eu-ru", "Bear Co", {"email": "pseudonymise", "display_name": None},
                      destination_country="RU")  # fmt: skip
    r = world.api.post("/v1/agreements", json=body, headers=h)
    assert r.status_code == 422
    problem = r.json()
    assert r.headers["content-type"].startswith("application/problem+json")
    assert problem["status"] == 422
    assert "`display_name`" in problem["detail"] or "`email`" in problem["detail"]
    assert "can never be sent to `Bear Co` in `RU`" in problem["detail"]
    assert world.api.get("/v1/agreements/eu-ru", headers=h).status_code == 404
    versions = [e for e in world.ledger() if e.get("event") == "agreement-version"]
    assert all(e["record"]["id"] != "eu-ru" for e in versions)


def test_amending_in_a_field_no_path_sends_is_refused(world: World) -> None:
    h = world.h("admin")
    body = _agreement("tiny", "Tiny Co", {"display_name": None}, max_subjects_per_year=1)
    current = world.api.get("/v1/agreements/tiny", headers=h).json()[-1]["version"]
    # Restricted data reaches a US recipient only pseudonymised in an export by the region's
    # services; a public field too. Both still have a path, so this amendment stands.
    ok = {**body, "fields": {"display_name": None, "email": "pseudonymise", "username": None}}
    r = world.api.put("/v1/agreements/tiny", json=ok, headers={**h, "If-Match": f'"{current}"'})
    assert r.status_code == 200, r.text
    # The same terms to a recipient whose country is of concern: no path at all.
    world.api.put("/v1/destinations/Tiny Co", json={"country": "CN", "status": "trusted"},
                  headers=h)  # fmt: skip
    bad = {**ok, "destination_country": "CN"}
    r = world.api.put(
        "/v1/agreements/tiny", json=bad, headers={**h, "If-Match": f'"{current + 1}"'}
    )
    assert r.status_code == 422
    assert "`CN`" in r.json()["detail"]
    assert "sofia" not in r.text.lower()
    world.api.put("/v1/destinations/Tiny Co", json={"country": "US", "status": "trusted"},
                  headers=h)  # fmt: skip
    r = world.api.put(
        "/v1/agreements/tiny", json=body, headers={**h, "If-Match": f'"{current + 1}"'}
    )
    assert r.status_code == 200, r.text


# -- the subject read three ways ----------------------------------------------------------


def test_in_region_officer_with_grant_reads_everything(world: World) -> None:
    grant = world.api.post(
        "/v1/grants",
        headers=world.h("officer-ie"),
        json={
            "region": "eu-ie",
            "subjects": [world.sofia],
            "categories": ["restricted", "allowable"],
            "purpose": "security",
            "justification": "ticket SEC-77",
            "duration_minutes": 30,
        },
    ).json()
    for approver in ("approver-ie", "approver2-ie"):
        step = world.api.post(f"/v1/grants/{grant['id']}:approve", headers=world.h(approver))
        assert step.status_code == 200, step.text
    r = world.read("officer-ie", world.sofia, "email,display_name,bio", "security")
    assert r.status_code == 200, r.text
    assert r.json()["fields"] == {k: PERSON[k] for k in ("email", "display_name", "bio")}
    last = [e for e in world.ledger() if e["kind"] == "decision"][-1]
    assert last["result"] == "allow"
    assert "transfer_agreement" not in last["input"]["context"]
    # In region: no transfer entry for this decision.
    assert not [
        e for e in world.ledger() if e.get("decision_id") == last["decision_id"] and
        e["kind"] == "transfer"
    ]  # fmt: skip


def test_us_analyst_gets_transformed_allowable_data_under_the_agreement(world: World) -> None:
    fields = "display_name,bio,follower_count,email,username"
    r = world.read("analyst-us", world.sofia, fields, "analytics")
    assert r.status_code == 200, r.text
    body = r.json()
    shown = body["fields"]
    assert set(shown) == {"display_name", "bio", "follower_count"}
    assert shown["display_name"].startswith("ps_")
    assert shown["bio"].startswith("tk_")
    assert shown["follower_count"] == 40
    assert set(body["withheld"]) == {"email", "username"}
    for secret in SECRETS:
        assert secret not in r.text
    # The same subject gets the same pseudonym within the agreement's domain.
    again = world.read("analyst-us", world.sofia, "display_name", "analytics").json()
    assert again["fields"]["display_name"] == shown["display_name"]
    entries = world.ledger()
    decision = next(
        e
        for e in reversed(entries)
        if e["kind"] == "decision" and e["input"]["principal"]["id"] == "analyst-us"
        and e["input"]["resource"]["fields"] == sorted(fields.split(","))
    )  # fmt: skip
    assert decision["result"] == "allow"
    assert decision["input"]["context"]["transfer_agreement"] == "eu-us-analytics"
    assert decision["input"]["context"]["transforms_applied"] is True
    assert "allowable-transfer-under-agreement" in decision["policy_ids"]
    transfer = next(
        e for e in entries if e["kind"] == "transfer"
        and e.get("decision_id") == decision["decision_id"]
    )  # fmt: skip
    assert transfer["event"] == "remote-read"
    assert transfer["agreement_id"] == "eu-us-analytics"
    assert transfer["agreement_version"] == 1
    assert transfer["destination_entity"] == "Analytics Inc"
    assert transfer["destination_country"] == "US"
    assert transfer["fields"] == {
        "bio": "tokenise",
        "display_name": "pseudonymise",
        "follower_count": "keep",
    }
    assert transfer["subject_ref"] == decision["input"]["resource"]["subject_ref"]
    for secret in SECRETS:
        assert secret.encode() not in world.raw_ledger()


def test_us_analyst_never_gets_restricted_data(world: World) -> None:
    r = world.read("analyst-us", world.sofia, "email,full_name", "analytics")
    assert r.status_code == 403
    assert "sofia" not in r.text.lower()


def test_batch_read_from_the_us_is_transformed_too(world: World) -> None:
    r = world.api.post(
        "/v1/subjects:batchGet",
        headers=world.h("analyst-us"),
        json={"ids": [world.sofia, *world.crowd[:2]], "fields": ["display_name"],
              "purpose": "analytics"},
    )  # fmt: skip
    items = r.json()["items"]
    assert all(i["subject"]["fields"]["display_name"].startswith("ps_") for i in items)
    assert len({i["subject"]["fields"]["display_name"] for i in items}) == 3


def test_country_of_concern_is_denied_and_recorded(world: World) -> None:
    r = world.read("analyst-ru", world.sofia, "display_name", "analytics")
    assert r.status_code == 403
    assert "registered in `US`, not `RU`" in r.json()["detail"]
    decision = [e for e in world.ledger() if e["kind"] == "decision"][-1]
    assert decision["input"]["principal"]["id"] == "analyst-ru"
    assert decision["result"] == "deny"
    assert "countries-of-concern" in decision["policy_ids"]
    assert decision["input"]["context"]["transfer_agreement"] is None


# -- export and re-identification ----------------------------------------------------------


def _export(world: World, who: str, **body: Any):
    payload = {"region": "eu-ie", "agreement": "eu-us-analytics", **body}
    return world.api.post("/v1/exports", json=payload, headers=world.h(who))


def test_export_to_the_analytics_destination(world: World) -> None:
    subjects = [world.sofia, *world.crowd]
    r = _export(world, "officer-ie", subjects=subjects,
                fields=["display_name", "birth_date", "coarse_location", "email"])  # fmt: skip
    assert r.status_code == 200, r.text
    lines = [json.loads(line) for line in r.content.splitlines()]
    assert len(lines) == len(subjects) == int(r.headers["Domicile-Export-Records"])
    digest = hashlib.sha256(r.content).hexdigest()
    assert r.headers["Domicile-Export-Sha256"] == digest
    for line in lines:
        assert line["subject"].startswith("ps_")
        assert line["subject"] not in subjects
        assert line["fields"]["birth_date"] == 1991
        assert line["fields"]["coarse_location"] == "IE"
        assert line["fields"]["email"].startswith("ps_")
    for secret in SECRETS:
        assert secret.encode() not in r.content
    entry = decode_entry(
        world.runtime.logs["eu-ie"].entry(int(r.headers["Domicile-Export-Ledger-Index"]))
    )
    assert entry["kind"] == "transfer"
    assert entry["event"] == "export"
    assert entry["sha256"] == digest
    assert entry["subjects"] == len(subjects)
    assert entry["bytes"] == len(r.content)
    assert entry["k_anonymity"]["quasi_identifiers"] == ["birth_date", "coarse_location"]
    assert entry["k_anonymity"]["smallest_class"] == len(subjects)
    decision = next(
        e for e in world.ledger() if e.get("decision_id") == entry["decision_id"]
        and e["kind"] == "decision"
    )  # fmt: skip
    assert decision["action"] == "transfer"
    assert decision["result"] == "allow"


def test_export_that_is_not_k_anonymous_is_refused(world: World) -> None:
    r = _export(world, "officer-ie", subjects=[world.sofia, *world.crowd, world.outlier])
    assert r.status_code == 403
    assert "not 5-anonymous" in r.json()["detail"]
    refused = [e for e in world.ledger() if e.get("event") == "export-refused"][-1]
    assert refused["offending_classes"] == 1
    assert refused["k"] == 5


def test_export_outside_the_policy_is_refused(world: World) -> None:
    assert _export(world, "analyst-us", subjects=[world.sofia]).status_code == 403
    assert _export(world, "admin", subjects=[world.sofia]).status_code == 403
    assert _export(world, "officer-ie", agreement="nope").status_code == 404
    assert _export(world, "officer-ie", agreement="old-deal").status_code == 403
    assert _export(world, "officer-ie", fields=["full_name"]).status_code == 403


def test_token_resolves_in_region_for_an_authorised_officer(world: World) -> None:
    token = world.read("analyst-us", world.sofia, "bio", "analytics").json()["fields"]["bio"]
    body = {"token": token, "field": "bio", "agreement": "eu-us-analytics", "purpose": "security"}
    url = "/v1/regions/eu-ie/tokens:resolve"
    r = world.api.post(url, json=body, headers=world.h("officer-ie"))
    assert r.status_code == 200, r.text
    assert r.json()["value"] == PERSON["bio"]
    entry = [e for e in world.ledger() if e.get("event") == "token-resolved"][-1]
    assert entry["principal_id"] == "officer-ie"
    assert entry["field"] == "bio"
    assert entry["token_sha256"] == hashlib.sha256(token.encode()).hexdigest()
    assert token not in json.dumps(entry)
    # Not outside the region, not for another purpose, not in another region.
    assert world.api.post(url, json=body, headers=world.h("analyst-us")).status_code == 403
    wrong = {**body, "purpose": "analytics"}
    assert world.api.post(url, json=wrong, headers=world.h("officer-ie")).status_code == 403
    other = world.api.post(
        "/v1/regions/eu-no/tokens:resolve", json=body, headers=world.h("officer-ie")
    )
    assert other.status_code in {403, 404}


# -- refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "reason"),
    [
        ("unknown-us", "not in the registry"),
        ("shady-us", "is untrusted"),
        ("other-us", "no transfer agreement"),
        ("expired-us", "not in force"),
    ],
)
def test_transfers_outside_an_agreement_are_denied(world: World, who: str, reason: str) -> None:
    r = world.read(who, world.sofia, "display_name", "analytics")
    assert r.status_code == 403
    assert reason in r.json()["detail"]
    decision = [e for e in world.ledger() if e["kind"] == "decision"][-1]
    assert decision["input"]["principal"]["id"] == who
    assert decision["result"] == "deny"


def test_threshold_warns_then_blocks(world: World) -> None:
    first = world.read("tiny-us", world.crowd[0], "display_name", "analytics")
    assert first.status_code == 200
    alerts = [e for e in world.ledger() if e["kind"] == "alert"]
    assert alerts[-1]["alert"] == "transfer-threshold-warning"
    again = world.read("tiny-us", world.crowd[0], "display_name", "analytics")
    assert again.status_code == 200  # the same person again is not a new subject
    second = world.read("tiny-us", world.crowd[1], "display_name", "analytics")
    assert second.status_code == 403
    assert "bulk threshold" in second.json()["detail"]
    block = [e for e in world.ledger() if e["kind"] == "alert"][-1]
    assert block["alert"] == "transfer-threshold-block"
    assert block["thresholds"]["counted"] is False


class _InProcess(httpx.BaseTransport):
    """The TestClient's transport, with its responses read into plain sync streams."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        body = b"".join(response.stream)  # type: ignore[union-attr]
        return httpx.Response(response.status_code, headers=response.headers, content=body)


def test_python_client_exports_and_resolves(world: World) -> None:
    transport = _InProcess(world.api._transport)  # the in-process app, behind the real client

    def client(who: str) -> Client:
        return Client("http://testserver", world.tokens[who], transport=transport)

    out = io.BytesIO()
    seen: list[int] = []
    with client("officer-ie") as officer:
        result = officer.export_dataset(
            out, region="eu-ie", agreement="eu-us-analytics",
            fields=["bio", "coarse_location"], subjects=[world.sofia, *world.crowd],
            progress=lambda done, total: seen.append(done),
        )  # fmt: skip
        assert result["records"] == 8
        assert result["sha256"] == hashlib.sha256(out.getvalue()).hexdigest()
        assert seen[-1] == len(out.getvalue())
        token = json.loads(out.getvalue().splitlines()[0])["fields"]["bio"]
        value = officer.resolve_token(
            "eu-ie", token=token, field="bio", agreement="eu-us-analytics", purpose="legal"
        )
        assert value == PERSON["bio"]
    with client("admin") as admin:
        assert "Analytics Inc" in {d["entity"] for d in admin.destinations()}
        suspended = admin.set_destination_status("Tiny Co", "suspended")
        assert suspended["status"] == "suspended"
    with client("tiny-us") as tiny, pytest.raises(AccessDenied, match="suspended"):
        tiny.get(world.crowd[0], purpose="analytics", fields=["display_name"])
    with client("analyst-us") as analyst, pytest.raises(AccessDenied):
        analyst.export_dataset(io.BytesIO(), region="eu-ie", agreement="eu-us-analytics")


def test_cli_names_the_field_an_agreement_can_never_send(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    transport = _InProcess(world.api._transport)
    monkeypatch.setattr(
        "domicile.cli_transfers.open_client",
        lambda url, token, token_file: Client(
            "http://testserver", token or "", transport=transport
        ),
    )
    world.api.put("/v1/destinations/Bear Co", json={"country": "RU", "status": "trusted"},
                  headers=world.h("admin"))  # fmt: skip
    terms = tmp_path / "terms.json"
    terms.write_text(json.dumps(_agreement("eu-ru-cli", "Bear Co", {"bio": None},
                                           destination_country="RU")))  # fmt: skip
    result = CliRunner().invoke(
        main, ["transfers", "agree", str(terms), "--token", world.tokens["admin"]]
    )
    assert result.exit_code == 1
    assert "field `bio` can never be sent to `Bear Co` in `RU`" in result.output
