"""Agreements, destinations and bulk thresholds: the same behaviour on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from domicile.catalog.catalog import load_catalog
from domicile.errors import (
    AccessDenied,
    ConfigError,
    Conflict,
    InvalidInput,
    NotFound,
    VersionMismatch,
)
from domicile.storage.database import Database, open_database
from domicile.storage.url import SqliteUrl
from domicile.transfers import (
    AgreementDraft,
    AgreementStore,
    DestinationRegistry,
    ThresholdConfig,
    ThresholdCounter,
    TrustStatus,
    load_threshold_config,
)

CATALOG = load_catalog()
T0 = datetime(2030, 1, 1, tzinfo=UTC)
KEY = b"\x07" * 32


@pytest.fixture
def db(database: Database) -> Database:
    """The backend under test (tests/conftest.py)."""
    return database


@pytest.fixture
def registry(db: Database) -> DestinationRegistry:
    reg = DestinationRegistry(db)
    reg.register("Analytics Inc", "US", TrustStatus.TRUSTED, by="officer")
    reg.register("Shady Ltd", "CN", TrustStatus.UNTRUSTED, by="officer")
    return reg


@pytest.fixture
def store(db: Database, registry: DestinationRegistry) -> AgreementStore:
    return AgreementStore(db, registry)


def draft(**changes: object) -> AgreementDraft:
    base = AgreementDraft(
        id="eu-us-analytics",
        destination_entity="Analytics Inc",
        destination_country="US",
        purpose="analytics",
        legal_basis="SCC-2021/914 module 1",
        tia_reference="TIA-2030-004",
        fields={"email": None, "birth_date": None, "iban": None, "coarse_location": "keep"},
        valid_from=T0,
        valid_until=T0 + timedelta(days=365),
        max_subjects_per_request=1000,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_agreement_takes_catalog_defaults_and_records_a_version(store: AgreementStore) -> None:
    agreement = store.create(draft(), CATALOG, by="officer", at=T0 - timedelta(days=1))
    assert agreement.version == 1
    assert dict(agreement.fields) == {
        "birth_date": "generalise:year", "coarse_location": "keep",
        "email": "pseudonymise", "iban": "suppress",
    }  # fmt: skip
    record = agreement.version_record()
    assert record["version"] == 1
    assert record["catalog_digest"] == CATALOG.digest()
    assert len(str(record["digest"])) == 64
    assert store.get("eu-us-analytics") == agreement
    assert agreement.plan(CATALOG)["email"].field_type == "email"
    with pytest.raises(Conflict):
        store.create(draft(), CATALOG, by="officer")


@pytest.mark.parametrize(
    "fields",
    [
        {"email": "keep"},
        {"birth_date": "pseudonymise"},
        {"iban": "tokenise"},
        {"ip_address": "keep"},
    ],
)
def test_agreement_transforms_may_only_be_stricter(
    store: AgreementStore, fields: dict[str, str]
) -> None:
    with pytest.raises(ConfigError):
        store.create(draft(fields=fields), CATALOG, by="officer")


def test_stricter_transforms_are_accepted(store: AgreementStore) -> None:
    fields = {"email": "suppress", "ip_address": "generalise:country", "display_name": "tokenise"}
    agreement = store.create(draft(fields=fields), CATALOG, by="officer")
    assert agreement.fields["ip_address"] == "generalise:country"


@pytest.mark.parametrize(
    "changes",
    [
        {"id": "Bad Id"}, {"destination_country": "XX"}, {"legal_basis": " "},
        {"valid_until": T0}, {"valid_from": datetime(2030, 1, 1)}, {"fields": {}},
        {"max_subjects_per_year": 0},
    ],
)  # fmt: skip
def test_bad_drafts_are_refused(store: AgreementStore, changes: dict[str, object]) -> None:
    with pytest.raises(InvalidInput):
        store.create(draft(**changes), CATALOG, by="officer")


def test_amendments_and_termination_make_new_versions(store: AgreementStore) -> None:
    store.create(draft(), CATALOG, by="officer", at=T0 - timedelta(days=10))
    v2 = store.amend(
        draft(fields={"email": None}), CATALOG, by="officer", expected_version=1,
        at=T0 + timedelta(days=10),
    )  # fmt: skip
    assert v2.version == 2
    with pytest.raises(VersionMismatch):
        store.amend(draft(), CATALOG, by="officer", expected_version=1)
    fields = ["email", "birth_date"]
    # Before the amendment, version 1 (which covers birth_date) was in force.
    found = store.find("Analytics Inc", "US", "analytics", fields, T0 + timedelta(days=5))
    assert found.version == 1
    with pytest.raises(AccessDenied, match="does not cover `birth_date`"):
        store.find("Analytics Inc", "US", "analytics", fields, T0 + timedelta(days=11))
    v3 = store.terminate(
        "eu-us-analytics", by="officer", expected_version=2, at=T0 + timedelta(days=20)
    )
    assert v3.terminated
    assert [a.version for a in store.versions("eu-us-analytics")] == [1, 2, 3]
    with pytest.raises(AccessDenied, match="terminated"):
        store.find("Analytics Inc", "US", "analytics", ["email"], T0 + timedelta(days=21))
    with pytest.raises(Conflict):
        store.terminate("eu-us-analytics", by="officer", expected_version=3)
    assert [a.version for a in store.all()] == [3]


def test_validity_window_and_volume(store: AgreementStore) -> None:
    store.create(draft(), CATALOG, by="officer", at=T0 - timedelta(days=1))
    find = store.find
    assert find("Analytics Inc", "US", "analytics", ["email"], T0).id == "eu-us-analytics"
    with pytest.raises(AccessDenied, match="not in force"):
        find("Analytics Inc", "US", "analytics", ["email"], T0 - timedelta(seconds=1))
    with pytest.raises(AccessDenied, match="not in force"):
        find("Analytics Inc", "US", "analytics", ["email"], T0 + timedelta(days=365))
    with pytest.raises(AccessDenied, match="no transfer agreement"):
        find("Analytics Inc", "US", "marketing", ["email"], T0)
    with pytest.raises(AccessDenied, match="at most 1000 subjects"):
        find("Analytics Inc", "US", "analytics", ["email"], T0, subjects=1001)


def test_unknown_untrusted_and_misplaced_destinations_are_refused(
    store: AgreementStore, registry: DestinationRegistry
) -> None:
    store.create(draft(), CATALOG, by="officer", at=T0 - timedelta(days=1))
    with pytest.raises(AccessDenied, match="not in the registry"):
        store.find("Nobody GmbH", "DE", "analytics", ["email"], T0)
    with pytest.raises(AccessDenied, match="is untrusted"):
        store.find("Shady Ltd", "CN", "analytics", ["email"], T0)
    with pytest.raises(AccessDenied, match="registered in `US`"):
        store.find("Analytics Inc", "CA", "analytics", ["email"], T0)
    suspended = registry.set_status(
        "Analytics Inc", TrustStatus.SUSPENDED, by="officer", note="audit"
    )
    assert suspended.version_record()["status"] == "suspended"
    with pytest.raises(AccessDenied, match="is suspended"):
        store.find("Analytics Inc", "US", "analytics", ["email"], T0)
    with pytest.raises(NotFound):
        registry.get("Nobody GmbH")
    assert [d.entity for d in registry.all()] == ["Analytics Inc", "Shady Ltd"]


def small_config() -> ThresholdConfig:
    return ThresholdConfig(
        limits={"personal_identifiers": 10, "precise_geolocation": 3},
        field_classes={"email": "personal_identifiers", "precise_location": "precise_geolocation"},
        warn_fraction=0.8,
    )


def test_threshold_warns_then_blocks_without_counting(db: Database) -> None:
    counter = ThresholdCounter(db, KEY, small_config())
    fields = {"email": "pseudonymise"}
    first = counter.check_and_count(
        destination_country="US", fields=fields, subject_ids=[f"s{i}" for i in range(7)], at=T0
    )
    assert first.counted
    assert not first.warnings
    assert first.new_subjects == 7
    again = counter.check_and_count(
        destination_country="US", fields=fields, subject_ids=["s0", "s1"], at=T0
    )
    assert again.counters[0].after == 7  # distinct subjects: a repeat does not count
    warn = counter.check_and_count(
        destination_country="US", fields=fields, subject_ids=["s7"], at=T0
    )
    assert [c.after for c in warn.warnings] == [8]
    blocked = counter.check_and_count(
        destination_country="US", fields=fields, subject_ids=["a", "b", "c"], at=T0
    )
    assert not blocked.counted
    assert blocked.blocked[0].after == 11
    with pytest.raises(AccessDenied, match="over the limit of 10"):
        blocked.verify_allowed()
    assert counter.count("country:US", "personal_identifiers", T0) == 8
    other = counter.check_and_count(
        destination_country="CA", fields=fields, subject_ids=["a"], at=T0
    )
    assert other.counted
    later = T0 + timedelta(days=366)  # the window rolls: old transfers stop counting
    assert counter.check_and_count(
        destination_country="US", fields=fields, subject_ids=["a", "b", "c"], at=later
    ).counted
    assert counter.prune(later) == 9


def test_threshold_classes_follow_the_transform(db: Database) -> None:
    counter = ThresholdCounter(db, KEY, small_config())
    coarse = counter.check_and_count(
        destination_country="US", fields={"precise_location": "generalise:country", "iban": "keep"},
        subject_ids=["a", "b", "c", "d"], at=T0,
    )  # fmt: skip
    assert coarse.counters == ()
    precise = counter.check_and_count(
        destination_country="US", fields={"precise_location": "tokenise", "email": "suppress"},
        subject_ids=["a", "b", "c", "d"], at=T0,
    )  # fmt: skip
    assert [c.data_class for c in precise.blocked] == ["precise_geolocation"]
    rows = db.query("SELECT subject_ref FROM transfer_subjects")
    assert rows == []  # blocked: nothing counted, and never a subject id


def test_agreement_yearly_volume_is_counted(db: Database, store: AgreementStore) -> None:
    agreement = store.create(draft(max_subjects_per_year=2), CATALOG, by="officer")
    counter = ThresholdCounter(db, KEY, small_config())
    ok = counter.check_and_count(
        destination_country="US",
        fields={"bio": "keep"},
        subject_ids=["a", "b"],
        at=T0,
        agreement=agreement,
    )
    assert ok.counted
    assert [c.scope for c in ok.counters] == ["agreement:eu-us-analytics"]
    refs = {str(r[0]) for r in db.query("SELECT subject_ref FROM transfer_subjects")}
    assert refs == {counter.subject_ref("a"), counter.subject_ref("b")}
    assert "a" not in refs
    over = counter.check_and_count(
        destination_country="US",
        fields={"bio": "keep"},
        subject_ids=["c"],
        at=T0,
        agreement=agreement,
    )
    assert not over.counted


def test_threshold_counter_is_atomic_under_concurrency(db: Database) -> None:
    counter = ThresholdCounter(db, KEY, small_config())
    results: list[bool] = []
    lock = threading.Lock()

    def send(n: int) -> None:
        for i in range(3):
            status = counter.check_and_count(
                destination_country="US", fields={"email": "pseudonymise"},
                subject_ids=[f"t{n}-{i}"], at=T0,
            )  # fmt: skip
            with lock:
                results.append(status.counted)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(True) == 10  # exactly the limit passed, never more
    assert counter.count("country:US", "personal_identifiers", T0) == 10


def test_default_thresholds_follow_the_us_rule(tmp_path: Path) -> None:
    config = load_threshold_config()
    assert config.limits["personal_identifiers"] == 100_000
    assert config.limits["health"] == config.limits["financial"] == 10_000
    assert config.limits["precise_geolocation"] == 1_000
    assert config.field_classes["iban"] == "financial"
    assert set(config.field_classes) <= set(CATALOG.fields)
    bad = tmp_path / "t.toml"
    bad.write_text("[limits]\nx = 0\n[fields]\n", "utf-8")
    with pytest.raises(ConfigError, match="positive integer"):
        load_threshold_config(bad)
    with pytest.raises(ConfigError):
        ThresholdCounter(open_database(SqliteUrl(tmp_path / "k.db")), b"short", config)
