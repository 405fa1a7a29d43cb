"""`GET /metrics`: Prometheus text that counts what a user would ask about, and never
names a subject."""

from __future__ import annotations

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from domicile.runtime import Runtime

PERSON = {"full_name": "Aoife Murphy", "email": "aoife.murphy@example.org"}


def h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _samples(api: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = api.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "aoife" not in response.text.lower()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def test_metrics_count_requests_decisions_and_the_logs(
    api: TestClient, tokens: dict[str, str], runtime: Runtime
) -> None:
    before = _samples(api)
    created = api.post("/v1/subjects", json={"country": "IE", "fields": PERSON},
                       headers=h(tokens["svc"]))  # fmt: skip
    sid = created.json()["id"]
    assert (
        api.get(f"/v1/subjects/{sid}?purpose=support", headers=h(tokens["svc"])).status_code == 200
    )
    assert (
        api.get(f"/v1/subjects/{sid}?purpose=support", headers=h(tokens["svc_us"])).status_code
        == 403
    )
    assert api.get("/no/such/path").status_code == 404
    after = _samples(api)

    def grew(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    read = {"method": "GET", "route": "/v1/subjects/{subject_id}"}
    assert grew("domicile_http_requests_total", **read, status="200") == 1
    assert grew("domicile_http_requests_total", **read, status="403") == 1
    assert grew("domicile_http_requests_total", method="GET", route="unmatched", status="404") == 1
    assert grew("domicile_http_request_duration_seconds_count", **read) == 2
    # The US service's read of an Irish subject is denied and recorded in eu-ie's log.
    assert grew("domicile_decisions_total", region="eu-ie", result="allow") >= 2  # write, read
    assert grew("domicile_decisions_total", region="eu-ie", result="deny") == 1
    assert grew("domicile_ledger_entries_total", region="eu-ie", kind="decision") >= 3
    log = runtime.logs["eu-ie"]
    assert after["domicile_ledger_size", (("region", "eu-ie"),)] == log.size
    assert ("process_resident_memory_bytes", ()) in after
    assert not any(sid in str(key) for key in after)  # no subject in any label


def test_metrics_show_the_bulk_transfer_counters_beside_their_limits(
    api: TestClient, runtime: Runtime
) -> None:
    counter = runtime.transfers.counters["eu-ie"]
    status = counter.check_and_count(
        destination_country="US",
        fields={"email": "pseudonymise"},
        subject_ids=["a" * 32, "b" * 32, "c" * 32],
    )
    status.verify_allowed()
    samples = _samples(api)
    scope = (("data_class", "personal_identifiers"), ("scope", "country:US"))
    assert samples["domicile_transfer_subjects", scope] == 3
    limit = (("data_class", "personal_identifiers"),)
    assert samples["domicile_transfer_subject_limit", limit] == 100_000
