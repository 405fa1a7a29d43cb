"""Dataset exports over several pages: what is sent equals what the plain transforms give,
every subject is unwrapped against the recorded decision and counted once, and nothing
is counted or left behind when k-anonymity, a threshold or a transform refuses."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from domicile.errors import AccessDenied, IntegrityError, RequestAbandoned
from domicile.gateway.dataset_export import ExportSpec, finish_export, prepare_export
from domicile.gateway.transfer import version_events
from domicile.keys.envelope import field_aad, open_fields, open_sealed, seal
from domicile.ledger.entry import decode_entry
from domicile.pets.keyed import pseudonymise
from domicile.pets.transform import transform_values
from domicile.principals.store import Principal
from domicile.runtime import Runtime, open_runtime
from domicile.settings import Settings
from domicile.transfers.model import AgreementDraft, TrustStatus

REGION, COUNTRY, ENTITY = "eu-ie", "IE", "Analytics Inc"
FIELDS = {"email": "pseudonymise", "birth_date": "generalise:year", "bio": "tokenise"}
PEOPLE = 1203  # more than two pages of 500


@dataclass
class World:
    runtime: Runtime
    principal: Principal
    ids: list[str]
    spool: Path


def _person(n: int) -> dict[str, object]:
    return {
        "email": f"person{n}@example.org",
        "birth_date": f"19{80 + n % 5}-0{1 + n % 9}-1{n % 10}",
        "bio": f"likes number {n}",
        "display_name": f"p{n}",
    }


def _world(tmp_path: Path, limit: int) -> World:
    thresholds = tmp_path / "thresholds.toml"
    thresholds.write_text(
        f'[limits]\npersonal_identifiers = {limit}\n[fields]\nemail = "personal_identifiers"\n'
    )
    settings = Settings(data_dir=tmp_path / "data", thresholds_file=thresholds)
    runtime = open_runtime(settings)
    runtime.principals.add("admin", "operator", COUNTRY, {"admin"})
    token = runtime.principals.add("svc", "Shop EU Ltd", COUNTRY, {"service"})
    principal = runtime.gateway.authenticate(token)
    desk, gateway = runtime.transfers, runtime.gateway
    dest = desk.destinations.register(ENTITY, "US", TrustStatus.TRUSTED, by="admin")
    gateway.record(version_events(desk.topology, dest.version_record(), "destination-version"))
    now = datetime.now(UTC)
    draft = AgreementDraft(
        id="eu-us-analytics", destination_entity=ENTITY, destination_country="US",
        purpose="analytics", legal_basis="SCC", tia_reference="TIA-1", fields=FIELDS,
        valid_from=now - timedelta(days=1), valid_until=now + timedelta(days=30),
    )  # fmt: skip
    desk.agreements.create(draft, desk.catalog, by="admin")
    placed = gateway.register_many(principal, [(COUNTRY, _person(n)) for n in range(PEOPLE)])
    spool = tmp_path / "spool"
    spool.mkdir()
    return World(runtime, principal, [sid for sid, _ in placed], spool)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = _world(tmp_path, 1_000_000)
    yield w
    w.runtime.close()


def _export(world: World, workers: int = 0, **spec: object) -> Any:
    return prepare_export(
        world.runtime.gateway, world.runtime.transfers, world.principal,
        ExportSpec(region=REGION, agreement_id="eu-us-analytics", **spec),  # type: ignore[arg-type]
        min_k=2, page=500, workers=workers, spool_dir=str(world.spool),
    )  # fmt: skip


@pytest.fixture
def pool_for_any_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """Worker processes even for the test's small exports (they start from 20,000)."""
    monkeypatch.setattr("domicile.gateway.dataset_export._POOL_MIN", 0)


def _tamper(world: World, subject_id: str) -> None:
    """Flip one hex digit of a stored ciphertext, as someone with the vault file could."""
    db = world.runtime.gateway.regions[REGION].vault.db
    (stored,) = db.query("SELECT sealed FROM subjects WHERE id = ?", (subject_id,))[0]
    values = json.loads(stored)
    blob = values["email"]
    values["email"] = blob[:-1] + ("0" if blob[-1] != "0" else "1")
    with db.transaction() as tx:
        tx.execute("UPDATE subjects SET sealed = ? WHERE id = ?", (json.dumps(values), subject_id))


def _ledger(world: World) -> list[dict[str, Any]]:
    log = world.runtime.logs[REGION]
    return [decode_entry(log.entry(i)) for i in range(log.size)]


def test_pages_send_what_the_plain_transforms_give(world: World) -> None:
    prepared = _export(world)
    body = b"".join(prepared.chunks())  # type: ignore[attr-defined]
    assert not any(world.spool.iterdir())  # streamed, then deleted; no ref spool left
    lines = [json.loads(line) for line in body.splitlines()]
    assert len(lines) == PEOPLE == prepared.records  # type: ignore[attr-defined]
    assert hashlib.sha256(body).hexdigest() == prepared.digest  # type: ignore[attr-defined]
    desk = world.runtime.transfers
    keys = desk.keys[REGION]
    agreement = desk.agreements.get("eu-us-analytics")
    subject_key = keys.pseudonym_key(agreement.id)
    by_subject = {
        pseudonymise("subject_id", sid, subject_key): n for n, sid in enumerate(world.ids)
    }
    plan = agreement.plan(desk.catalog)
    for line in lines:
        n = by_subject[line["subject"]]
        person = {k: v for k, v in _person(n).items() if k in FIELDS}
        expected = transform_values(plan, desk.catalog.validate(person), keys, domain=agreement.id)
        assert line["fields"] == expected
    for n in range(0, PEOPLE, 97):
        assert f"person{n}@".encode() not in body
        assert world.ids[n].encode() not in body


def test_an_export_whose_reader_goes_away_leaves_no_file_behind(world: World) -> None:
    """The spool has no name on disk from the moment the export is ready: a client that
    stops after the first chunk (or a gateway that dies) leaves no file of pseudonymised
    records, and closing the stream frees it."""
    prepared = _export(world)
    assert not any(world.spool.iterdir())  # nothing by name, before a byte is sent
    chunks = prepared.chunks()
    assert next(chunks)  # the reader takes one chunk, then is gone
    del chunks
    assert not any(world.spool.iterdir())
    prepared.discard()
    assert prepared.spool.closed


def test_a_stream_cut_short_is_recorded_with_the_bytes_handed_out(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ledger records an export as released before its first byte; a stream that
    ends early adds an `export-interrupted` entry saying how much of it was handed out.
    A whole stream adds nothing, and finishing twice records once."""
    monkeypatch.setattr("domicile.gateway.dataset_export._CHUNK", 4096)
    gateway = world.runtime.gateway
    whole = _export(world)
    assert b"".join(whole.chunks())
    assert finish_export(gateway, whole) is None
    cut = _export(world)
    chunks = cut.chunks()
    assert len(next(chunks)) == 4096  # the client takes one chunk and is gone
    index = finish_export(gateway, cut)
    assert index == world.runtime.logs[REGION].size - 1
    assert cut.spool.closed
    assert finish_export(gateway, cut) is None
    entries = _ledger(world)
    interrupted = [e for e in entries if e.get("event") == "export-interrupted"]
    assert len(interrupted) == 1
    (entry,) = interrupted
    assert entry == {**entry, "export_index": cut.ledger_index, "bytes": cut.size,
                     "bytes_sent": 4096}  # fmt: skip
    export = decode_entry(world.runtime.logs[REGION].entry(cut.ledger_index))
    assert export["event"] == "export"
    assert entry["decision_id"] == export["decision_id"]


@pytest.mark.parametrize("gone_at", [2, 4], ids=["during-the-pages", "before-counting"])
def test_a_client_gone_before_the_release_stops_the_export(
    world: World, monkeypatch: pytest.MonkeyPatch, gone_at: int
) -> None:
    """Asked between pages (here after every page) and before anything is counted: a
    client that went away ends the export with an `export-abandoned` entry; nothing is
    counted, recorded as sent, or left in the spool."""
    monkeypatch.setattr("domicile.gateway.dataset_export._ASK_EVERY", 1)
    asked: list[int] = []

    def abandoned() -> bool:
        asked.append(1)
        return len(asked) >= gone_at

    with pytest.raises(RequestAbandoned):
        prepare_export(
            world.runtime.gateway, world.runtime.transfers, world.principal,
            ExportSpec(region=REGION, agreement_id="eu-us-analytics"),
            min_k=2, page=500, spool_dir=str(world.spool), abandoned=abandoned,
        )  # fmt: skip
    assert len(asked) == gone_at  # one ask per page (three), then one before counting
    assert not any(world.spool.iterdir())
    counter = world.runtime.transfers.counters[REGION]
    assert counter.count("country:US", "personal_identifiers") == 0
    entries = _ledger(world)
    assert not [e for e in entries if e.get("event") == "export"]
    (gone,) = [e for e in entries if e.get("event") == "export-abandoned"]
    decision = [e for e in entries if e["kind"] == "decision" and e["action"] == "transfer"][-1]
    assert gone["decision_id"] == decision["decision_id"]
    assert gone["reason"] == "client-disconnected"


def test_every_subject_is_unwrapped_against_the_decision_and_counted_once(world: World) -> None:
    custodian = world.runtime.gateway.regions[REGION].custodian
    before = len(custodian.unwraps(limit=10**6))
    prepared = _export(world)
    prepared.discard()  # type: ignore[attr-defined]
    entries = _ledger(world)
    decision = [e for e in entries if e["kind"] == "decision" and e["action"] == "transfer"][-1]
    export = [e for e in entries if e.get("event") == "export"][-1]
    assert export["subjects"] == PEOPLE
    assert export["decision_id"] == decision["decision_id"]
    unwraps = custodian.unwraps(limit=10**6)[before:]
    assert len(unwraps) == PEOPLE
    assert {u.decision_id for u in unwraps} == {decision["decision_id"]}
    assert all(u.ledger_index == export["decision_index"] for u in unwraps)
    counter = world.runtime.transfers.counters[REGION]
    assert counter.count("country:US", "personal_identifiers") == PEOPLE
    _export(world).discard()  # type: ignore[attr-defined]
    assert counter.count("country:US", "personal_identifiers") == PEOPLE  # distinct


def test_listed_subjects_skip_the_erased(world: World) -> None:
    world.runtime.gateway.erase(world.principal, world.ids[3])
    prepared = _export(world, subjects=tuple(world.ids[:10]), quasi_identifiers=())
    assert prepared.records == 9  # type: ignore[attr-defined]
    prepared.discard()  # type: ignore[attr-defined]


def test_a_threshold_block_sends_and_counts_nothing(tmp_path: Path) -> None:
    world = _world(tmp_path, PEOPLE - 1)
    try:
        with pytest.raises(AccessDenied, match="bulk threshold"):
            _export(world)
        assert not any(world.spool.iterdir())
        counter = world.runtime.transfers.counters[REGION]
        assert counter.count("country:US", "personal_identifiers") == 0
        alerts = [e for e in _ledger(world) if e.get("alert") == "transfer-threshold-block"]
        assert alerts[-1]["thresholds"]["counters"][0]["after"] == PEOPLE
        assert not [e for e in _ledger(world) if e.get("event") == "export"]
    finally:
        world.runtime.close()


def test_k_anonymity_refusal_counts_nothing(world: World) -> None:
    with pytest.raises(AccessDenied):
        _export(world, subjects=tuple(world.ids[:3]), quasi_identifiers=("birth_date",))
    assert not any(world.spool.iterdir())
    counter = world.runtime.transfers.counters[REGION]
    assert counter.count("country:US", "personal_identifiers") == 0


@pytest.mark.parametrize("workers", [0, 2])
def test_a_tampered_value_stops_the_export_and_counts_nothing(
    world: World, workers: int, pool_for_any_size: None
) -> None:
    _tamper(world, sorted(world.ids)[700])  # on the second page
    with pytest.raises(IntegrityError, match="does not verify"):
        _export(world, workers=workers)
    assert not any(world.spool.iterdir())
    assert world.runtime.transfers.counters[REGION].count("country:US", "personal_identifiers") == 0
    assert not [e for e in _ledger(world) if e.get("event") == "export"]


def test_worker_processes_send_the_same_bytes_as_one_thread(
    world: World, pool_for_any_size: None
) -> None:
    custodian = world.runtime.gateway.regions[REGION].custodian
    alone = _export(world, workers=0)
    body = b"".join(alone.chunks())
    before = len(custodian.unwraps(limit=10**6))
    pooled = _export(world, workers=2)
    assert b"".join(pooled.chunks()) == body
    assert (pooled.digest, pooled.records, pooled.report) == (alone.digest, PEOPLE, alone.report)
    assert len(custodian.unwraps(limit=10**6)) - before == PEOPLE
    assert not any(world.spool.iterdir())


def test_open_fields_is_open_sealed_per_field() -> None:
    key = os.urandom(32)
    sealed = {
        name: seal(key, value, field_aad("a" * 32, REGION, name))
        for name, value in {"email": b'"x@y.z"', "bio": b'"hi"'}.items()
    }
    opened = open_fields(key, "a" * 32, REGION, sealed)
    assert opened == {
        n: open_sealed(key, b, field_aad("a" * 32, REGION, n)) for n, b in sealed.items()
    }
    with pytest.raises(IntegrityError):
        open_fields(key, "b" * 32, REGION, sealed)  # bound to its subject
    with pytest.raises(IntegrityError):
        open_fields(key, "a" * 32, REGION, {"bio": sealed["email"]})  # and to its field
