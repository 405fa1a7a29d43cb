"""A `domicile up` whose export client goes away: before the release (the export stops,
`export-abandoned`, nothing counted) and in the middle of the stream (`export-interrupted`
with the bytes handed to the connection). Only a real server and a real socket show
that the gateway notices a closed connection from the thread that prepares the export,
and that the response's clean-up runs after the client is gone."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from domicile.gateway.transfer import version_events
from domicile.ledger.entry import decode_entry
from domicile.runtime import open_runtime
from domicile.settings import Settings
from domicile.transfers.model import AgreementDraft

SUBJECTS = 40_000  # ~12 MB of export: well beyond what the sockets buffer, 80 pages of 500
FIELDS = ("advertising_id", "device_id", "email", "full_name", "phone")


def _prepare(data_dir: Path) -> str:
    """A region of SUBJECTS Irish subjects and an agreement; the service's token."""
    runtime = open_runtime(Settings(data_dir=data_dir))
    try:
        runtime.principals.add("admin", "operator", "IE", {"admin"})
        token = runtime.principals.add("svc", "Shop EU Ltd", "IE", {"service"})
        desk, gateway = runtime.transfers, runtime.gateway
        dest = desk.destinations.register("Analytics Inc", "US", "trusted", by="admin")
        gateway.record(version_events(desk.topology, dest.version_record(), "destination-version"))
        now = datetime.now(UTC)
        draft = AgreementDraft(
            id="eu-us-analytics", destination_entity="Analytics Inc", destination_country="US",
            purpose="analytics", legal_basis="SCC-2021/914 module 1", tia_reference="TIA-1",
            fields=dict.fromkeys(FIELDS, "pseudonymise"),
            valid_from=now - timedelta(days=1), valid_until=now + timedelta(days=30),
        )  # fmt: skip
        agreement = desk.agreements.create(draft, desk.catalog, by="admin")
        gateway.record(
            version_events(desk.topology, agreement.version_record(), "agreement-version")
        )
        svc = gateway.authenticate(token)
        for at in range(0, SUBJECTS, 5000):
            people = [
                {"advertising_id": f"{n:032x}", "device_id": f"dev-{n:016x}",
                 "email": f"p{n:08d}@example.org", "full_name": f"Person {n}",
                 "phone": f"+353{10**8 + n}"}
                for n in range(at, at + 5000)
            ]  # fmt: skip
            gateway.register_many(svc, [("IE", p) for p in people])
        return token
    finally:
        runtime.close()


def _transfers(data_dir: Path) -> list[dict[str, object]]:
    runtime = open_runtime(Settings(data_dir=data_dir))
    try:
        log = runtime.logs["eu-ie"]
        entries = (decode_entry(log.entry(i)) for i in range(SUBJECTS, log.size))
        return [e for e in entries if e["kind"] == "transfer"]
    finally:
        runtime.close()


def test_a_client_that_leaves_is_recorded_as_gone_not_as_served(
    tmp_path: Path, domicile_up: Callable[..., AbstractContextManager[str]]
) -> None:
    data_dir = tmp_path / "domicile-data"
    headers = {"Authorization": f"Bearer {_prepare(data_dir)}"}
    body = {"region": "eu-ie", "agreement": "eu-us-analytics"}
    with domicile_up(tmp_path) as url:
        # Gone while the export is prepared: the gateway asks every 32 pages whether
        # anyone is still there; 80 pages take far longer than this.
        with pytest.raises(httpx.TimeoutException):
            httpx.post(f"{url}/v1/exports", json=body, headers=headers, timeout=0.3)
        # Gone after the first bytes of the stream.
        with httpx.stream("POST", f"{url}/v1/exports", json=body, headers=headers,
                          timeout=120) as streamed:  # fmt: skip
            assert streamed.status_code == 200, streamed.read()
            assert next(streamed.iter_raw(64 * 1024))
        time.sleep(2)  # the server's clean-up runs once it sees the connection closed
    # Stopped (uvicorn lets running requests finish first): read what it recorded.
    flows = [e for e in _transfers(data_dir) if str(e.get("event")).startswith("export")]
    assert [e["event"] for e in flows] == ["export-abandoned", "export", "export-interrupted"]
    gone, export, cut = flows
    assert gone["reason"] == "client-disconnected"
    assert gone["decision_id"] != export["decision_id"]  # each request decided on its own
    assert export["subjects"] == SUBJECTS
    assert cut["decision_id"] == export["decision_id"]
    assert 0 < cut["bytes_sent"] < cut["bytes"] == export["bytes"]
