"""An export under an agreement whose destination is a country of concern is refused,
even if the agreement predates the check that refuses such agreements at creation: by
the default policies, which see the destination country, and by the gateway itself
under a policy set that forgets to look at it."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from domicile.api.app import create_app
from domicile.ledger.entry import decode_entry
from domicile.policy.snapshot import default_policies
from domicile.runtime import open_runtime
from domicile.settings import Settings
from transfer_support import register_irish, service_and_officer, stored_agreement

PERSON = {"full_name": "Ana Silva", "email": "ana@example.org", "display_name": "Ana",
          "birth_date": "1990-01-01", "coarse_location": "IE"}  # fmt: skip


def _export_to_russia(settings: Settings) -> tuple[dict[str, object], list[dict[str, object]]]:
    """Export six subjects under an old agreement with a recipient in RU: the answer and
    the ledger entries it made (checked to hold no export and to unwrap no key)."""
    runtime = open_runtime(settings)
    try:
        svc, officer = service_and_officer(runtime)
        stored_agreement(runtime, "old-ru", "Moscow Analytics", "RU")
        with TestClient(create_app(settings, runtime)) as api:
            people = [{**PERSON, "display_name": f"p{i}"} for i in range(6)]
            ids = register_irish(api, svc, people)
            log = runtime.logs["eu-ie"]
            start = log.size
            got = api.post("/v1/exports", headers={"Authorization": f"Bearer {officer}"}, json={
                "region": "eu-ie", "agreement": "old-ru", "subjects": ids,
                "fields": ["display_name"]})  # fmt: skip
            assert got.status_code == 403, got.text
            entries = [decode_entry(log.entry(i)) for i in range(start, log.size)]
            decisions = [e for e in entries if e["kind"] == "decision"]
            assert decisions
            assert all(e["result"] == "deny" for e in decisions)
            assert all(e["input"]["context"]["destination_country"] == "RU" for e in decisions)
            assert not [e for e in entries if e.get("event") == "export"]
            unwraps = runtime.gateway.regions["eu-ie"].custodian.unwraps(0, 100_000)
            assert all(u.ledger_index < start for u in unwraps)  # no key was unwrapped
            return got.json(), decisions
    finally:
        runtime.close()


def test_the_default_policies_refuse_an_export_to_a_country_of_concern(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "gw", checkpoint_interval=3600)
    problem, decisions = _export_to_russia(settings)
    assert "countries-of-concern" in str(problem["detail"])
    assert all(e["policy_ids"] == ["countries-of-concern"] for e in decisions)


def test_the_gateway_refuses_it_under_policies_that_do_not_look(tmp_path: Path) -> None:
    text = default_policies().text
    clause = (
        '||\n   Domicile::Settings::"active"'
        ".countries_of_concern.contains(context.destination_country)"
    )
    assert clause in text
    policies = tmp_path / "policies.cedar"
    policies.write_text(text.replace(clause, ""))
    settings = Settings(data_dir=tmp_path / "gw", checkpoint_interval=3600, policy_file=policies)
    problem, decisions = _export_to_russia(settings)
    assert "country of concern" in str(problem["detail"])
    assert all(e["policy_ids"] != ["countries-of-concern"] for e in decisions)
