"""The vault conformance suite: the same behaviour on SQLite and on PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from domicile.errors import (
    IntegrityError,
    StorageError,
    SubjectErased,
    SubjectNotFound,
    VersionMismatch,
)
from domicile.storage.database import open_database
from domicile.storage.migrations import load_migrations
from domicile.storage.url import StorageUrl
from domicile.vault.store import SubjectState, Vault, unpack_sealed


@pytest.fixture
def vault(storage_url: StorageUrl) -> Iterator[Vault]:
    v = Vault("eu-ie", open_database(storage_url))
    yield v
    v.close()


def test_insert_then_fetch_returns_sealed_values(vault: Vault) -> None:
    vault.insert("a" * 32, {"email": b"\x01sealed-email", "phone": b"\x01sealed-phone"}, "v1")
    record = vault.fetch("a" * 32)
    assert record.fields == {"email": b"\x01sealed-email", "phone": b"\x01sealed-phone"}
    assert record.version == 1
    assert record.region == "eu-ie"
    assert record.catalog_version == "v1"


def test_fetch_selects_only_named_fields(vault: Vault) -> None:
    vault.insert("a" * 32, {"email": b"e", "phone": b"p"}, "v1")
    assert vault.fetch("a" * 32, ["phone"]).fields == {"phone": b"p"}
    assert vault.fetch("a" * 32, []).fields == {}


def test_unknown_subject_is_not_found(vault: Vault) -> None:
    with pytest.raises(SubjectNotFound):
        vault.fetch("b" * 32)
    assert vault.state("b" * 32) is None


def test_insert_twice_conflicts_and_keeps_the_first(vault: Vault) -> None:
    from domicile.errors import Conflict

    vault.insert("a" * 32, {"email": b"first"}, "v1")
    with pytest.raises(Conflict):
        vault.insert("a" * 32, {"email": b"second"}, "v1")
    assert vault.fetch("a" * 32).fields == {"email": b"first"}


def test_insert_many_is_all_or_nothing(vault: Vault) -> None:
    from domicile.errors import Conflict

    vault.insert("a" * 32, {"email": b"x"}, "v1")
    with pytest.raises(Conflict):
        vault.insert_many([("c" * 32, {"email": b"c"}), ("a" * 32, {"email": b"dup"})], "v1")
    assert vault.state("c" * 32) is None


def test_update_sets_removes_and_bumps_version(vault: Vault) -> None:
    vault.insert("a" * 32, {"email": b"e", "phone": b"p"}, "v1")
    version = vault.update("a" * 32, {"email": b"e2", "bio": b"b"}, remove=["phone"])
    assert version == 2
    record = vault.fetch("a" * 32)
    assert record.fields == {"email": b"e2", "bio": b"b"}
    assert record.version == 2


def test_update_with_stale_version_changes_nothing(vault: Vault) -> None:
    vault.insert("a" * 32, {"email": b"e"}, "v1")
    vault.update("a" * 32, {"email": b"e2"}, expected_version=1)
    with pytest.raises(VersionMismatch):
        vault.update("a" * 32, {"email": b"e3"}, expected_version=1)
    assert vault.fetch("a" * 32).fields == {"email": b"e2"}


def test_tombstone_removes_values_and_refuses_reads(vault: Vault) -> None:
    vault.insert("a" * 32, {"email": b"e"}, "v1")
    vault.tombstone("a" * 32, SubjectState.ERASED)
    assert vault.state("a" * 32) is SubjectState.ERASED
    with pytest.raises(SubjectErased):
        vault.fetch("a" * 32)
    with pytest.raises(SubjectErased):
        vault.update("a" * 32, {"email": b"x"})
    assert vault.count(SubjectState.ERASED) == 1
    assert vault.count() == 0


def test_relocated_tombstone_is_replaced_when_the_subject_returns(vault: Vault) -> None:
    vault.insert("a" * 32, {"email": b"old"}, "v1")
    vault.tombstone("a" * 32, SubjectState.RELOCATED)
    vault.insert("a" * 32, {"email": b"new"}, "v1")
    assert vault.fetch("a" * 32).fields == {"email": b"new"}


def test_erased_subject_cannot_be_reinserted(vault: Vault) -> None:
    from domicile.errors import Conflict

    vault.insert("a" * 32, {"email": b"old"}, "v1")
    vault.tombstone("a" * 32, SubjectState.ERASED)
    with pytest.raises(Conflict):
        vault.insert("a" * 32, {"email": b"new"}, "v1")


def test_fetch_many_reports_misses_per_id(vault: Vault) -> None:
    vault.insert("a" * 32, {"email": b"e"}, "v1")
    vault.insert("c" * 32, {"email": b"c"}, "v1")
    vault.tombstone("c" * 32, SubjectState.ERASED)
    out = vault.fetch_many(["a" * 32, "b" * 32, "c" * 32], ["email"])
    assert out["a" * 32].fields == {"email": b"e"}  # type: ignore[union-attr]
    assert isinstance(out["b" * 32], SubjectNotFound)
    assert isinstance(out["c" * 32], SubjectErased)


def test_iter_ids_pages_through_everything(vault: Vault) -> None:
    ids = [f"{i:032x}" for i in range(25)]
    vault.insert_many([(i, {"email": b"e"}) for i in ids], "v1")
    assert list(vault.iter_ids(page=7)) == ids


def test_active_sealed_page_walks_active_subjects_in_id_order(vault: Vault) -> None:
    ids = [f"{i:032x}" for i in range(10)]
    vault.insert_many([(i, {"email": i.encode(), "phone": b"p"}) for i in ids], "v1")
    vault.tombstone(ids[4], SubjectState.ERASED)
    seen: list[str] = []
    after = ""
    while page := vault.active_sealed_page(after, 3):
        assert len(page) <= 3
        for sid, stored in page:
            opened = unpack_sealed(sid, "r", stored, ["email"])
            assert opened == {"email": sid.encode()}
        seen += [sid for sid, _ in page]
        after = page[-1][0]
    assert seen == [i for i in ids if i != ids[4]]


def test_active_sealed_keeps_the_order_given_and_leaves_out_the_inactive(vault: Vault) -> None:
    ids = [f"{i:032x}" for i in range(5)]
    vault.insert_many([(i, {"email": i.encode()}) for i in ids], "v1")
    vault.tombstone(ids[1], SubjectState.ERASED)
    asked = [ids[3], ids[1], "f" * 32, ids[0], ids[3]]
    got = vault.active_sealed(asked)
    assert [sid for sid, _ in got] == [ids[3], ids[0]]
    assert unpack_sealed(ids[0], "r", got[1][1], None) == {"email": ids[0].encode()}


def test_unpack_sealed_refuses_a_malformed_row() -> None:
    with pytest.raises(IntegrityError, match="malformed"):
        unpack_sealed("a" * 32, "r", '{"email": "not hex"}', ["email"])


def test_discard_leaves_no_trace(vault: Vault) -> None:
    vault.insert("a" * 32, {"email": b"e"}, "v1")
    vault.discard("a" * 32)
    assert vault.state("a" * 32) is None


def test_reopening_keeps_data_and_schema_version(vault: Vault) -> None:
    vault.insert("a" * 32, {"email": b"e"}, "v1")
    again = Vault("eu-ie", open_database(vault.db.url))
    try:
        assert again.fetch("a" * 32).fields == {"email": b"e"}
    finally:
        again.close()


def test_eight_concurrent_writers_lose_no_update(vault: Vault) -> None:
    """Read-modify-write with expected versions: every increment lands exactly once."""
    vault.insert("a" * 32, {"counter": b"0"}, "v1")
    per_writer = 15

    def writer() -> None:
        done = 0
        while done < per_writer:
            record = vault.fetch("a" * 32)
            value = int(record.fields["counter"]) + 1
            try:
                vault.update(
                    "a" * 32, {"counter": str(value).encode()}, expected_version=record.version
                )
            except VersionMismatch:
                continue
            done += 1

    threads = [threading.Thread(target=writer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    record = vault.fetch("a" * 32)
    assert int(record.fields["counter"]) == 8 * per_writer
    assert record.version == 1 + 8 * per_writer


def test_a_vault_of_the_field_row_layout_is_carried_over(storage_url: StorageUrl) -> None:
    """A vault written by the first schema (a row per field) opens with every sealed
    value, version and tombstone as it was, and its old field rows are gone."""
    db = open_database(storage_url)
    try:
        first = load_migrations("domicile.vault", db.dialect)[0]
        with db.transaction() as tx:
            tx.execute(
                "CREATE TABLE schema_migrations (component TEXT NOT NULL, version INTEGER"
                " NOT NULL, name TEXT NOT NULL, PRIMARY KEY (component, version))"
            )
            for statement in first.sql.split(";\n"):
                if statement.strip():
                    tx.execute(statement)
            tx.execute("INSERT INTO schema_migrations VALUES ('vault', 1, ?)", (first.name,))
            heads = [("a" * 32, "active", 3), ("b" * 32, "erased", 2), ("c" * 32, "active", 1)]
            for sid, state, version in heads:
                tx.execute(
                    "INSERT INTO subjects VALUES (?, ?, ?, 'v1', '2026-01-01', '2026-01-02')",
                    (sid, state, version),
                )
            for name, value in (("email", b"\x01\x00sealed"), ("phone", b"\xff\x01")):
                tx.execute("INSERT INTO fields VALUES (?, ?, ?)", ("a" * 32, name, value))
    finally:
        db.close()
    vault = Vault("eu-ie", open_database(storage_url))
    try:
        record = vault.fetch("a" * 32)
        assert record.fields == {"email": b"\x01\x00sealed", "phone": b"\xff\x01"}
        assert (record.version, record.created_at) == (3, "2026-01-01")
        assert vault.fetch("c" * 32).fields == {}
        with pytest.raises(SubjectErased):
            vault.fetch("b" * 32)
        assert vault.update("a" * 32, {"bio": b"b"}, remove=["phone"]) == 4
        assert vault.fetch("a" * 32).fields == {"email": b"\x01\x00sealed", "bio": b"b"}
        with pytest.raises(StorageError):
            vault.db.query("SELECT COUNT(*) FROM fields")
    finally:
        vault.close()


def test_a_tampered_row_is_an_integrity_error_not_a_crash(vault: Vault) -> None:
    vault.insert("a" * 32, {"email": b"e"}, "v1")
    with vault.db.transaction() as tx:
        tx.execute("UPDATE subjects SET sealed = ? WHERE id = ?", ('{"email": "zz"}', "a" * 32))
    with pytest.raises(IntegrityError):
        vault.fetch("a" * 32)
    with pytest.raises(IntegrityError):
        vault.fetch_many(["a" * 32])


def test_a_bulk_load_reads_back_exactly_what_it_wrote(vault: Vault) -> None:
    ids = ["a" * 32, "b" * 32]
    rows = [(ids[0], "email", b"\x01e"), (ids[0], "phone", b"\x01p"), (ids[1], "email", b"x")]
    written = vault.insert_rows(ids, rows, "v1")
    assert vault.stored_values([*ids, "c" * 32]) == written
    assert vault.fetch(ids[0]).fields == {"email": b"\x01e", "phone": b"\x01p"}
    vault.tombstone(ids[1], SubjectState.RELOCATED)
    assert vault.stored_values(ids) == {ids[0]: written[ids[0]]}
    with pytest.raises(ValueError, match="not among the subjects"):
        vault.insert_rows(["d" * 32], [("e" * 32, "email", b"e")], "v1")
    assert vault.state("d" * 32) is None
