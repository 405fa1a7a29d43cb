"""Test helper: a trusted destination and an agreement to it, straight into the stores."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from domicile.runtime import Runtime
from domicile.transfers.model import AgreementDraft, TrustStatus


def stored_agreement(runtime: Runtime, agreement_id: str, entity: str, country: str) -> None:
    """Register `entity` in `country` as trusted and store an analytics agreement sending
    it `display_name`, valid from yesterday for 30 days. Straight into the store, so the
    checks at creation through the API (a country of concern, say) do not run: as if the
    agreement were made before them."""
    desk = runtime.transfers
    desk.destinations.register(entity, country, TrustStatus.TRUSTED, by="test")
    now = datetime.now(UTC)
    desk.agreements.create(
        AgreementDraft(
            id=agreement_id, destination_entity=entity, destination_country=country,
            purpose="analytics", legal_basis="scc", tia_reference="TIA-1",
            fields={"display_name": None}, valid_from=now - timedelta(days=1),
            valid_until=now + timedelta(days=30),
        ),
        runtime.catalog, by="test",
    )  # fmt: skip


def service_and_officer(runtime: Runtime) -> tuple[str, str]:
    """Tokens of an Irish service and of an Irish officer of eu-ie's security entity."""
    svc = runtime.principals.add("svc-eu", "Shop EU Ltd", "IE", {"service"})
    officer = runtime.principals.add("officer-ie", "Trusted Security Partner EU", "IE", {"officer"})
    return svc, officer


def register_irish(
    api: TestClient, token: str, people: Iterable[Mapping[str, object]]
) -> list[str]:
    """Register each person as an Irish subject through the API; their ids."""
    ids = []
    for fields in people:
        made = api.post("/v1/subjects", headers={"Authorization": f"Bearer {token}"},
                        json={"country": "IE", "fields": fields})  # fmt: skip
        assert made.status_code == 201, made.text
        ids.append(made.json()["id"])
    return ids
