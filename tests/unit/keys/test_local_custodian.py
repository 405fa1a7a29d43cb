"""The local custodian: keys created, unwrapped, destroyed; wrapped keys bound to subject."""

from __future__ import annotations

import sqlite3
import stat
from collections.abc import Mapping
from pathlib import Path

import pytest

from domicile.errors import AccessDenied, Conflict, IntegrityError, KeyDestroyed
from domicile.keys.custodian import Authorization
from domicile.keys.local import LocalCustodian

AUTH = Authorization("d1", "test", ledger_index=7)


def test_create_unwrap_destroy(tmp_path: Path) -> None:
    custodian = LocalCustodian("eu-ie", tmp_path / "keys")
    keys = custodian.create_data_keys(["s1", "s2"], AUTH)
    assert custodian.unwrap_data_key("s1", AUTH) == keys["s1"]
    assert keys["s1"] != keys["s2"]
    custodian.destroy_data_key("s1", AUTH)
    with pytest.raises(KeyDestroyed):
        custodian.unwrap_data_key("s1", AUTH)
    assert custodian.unwrap_data_key("s2", AUTH) == keys["s2"]
    custodian.close()


def test_live_key_is_never_replaced(tmp_path: Path) -> None:
    custodian = LocalCustodian("eu-ie", tmp_path / "keys")
    first = custodian.create_data_keys(["s1"], AUTH)["s1"]
    with pytest.raises(Conflict):
        custodian.create_data_keys(["s1"], AUTH)
    assert custodian.unwrap_data_key("s1", AUTH) == first
    custodian.close()


def test_kek_file_is_private_and_reused(tmp_path: Path) -> None:
    custodian = LocalCustodian("eu-ie", tmp_path / "keys")
    key = custodian.create_data_keys(["s1"], AUTH)["s1"]
    custodian.close()
    kek = next((tmp_path / "keys").glob("kek-*.key"))
    assert stat.S_IMODE(kek.stat().st_mode) == 0o600
    again = LocalCustodian("eu-ie", tmp_path / "keys")
    assert again.unwrap_data_key("s1", AUTH) == key
    again.close()


def test_wrapped_key_moved_to_another_subject_does_not_unwrap(tmp_path: Path) -> None:
    custodian = LocalCustodian("eu-ie", tmp_path / "keys")
    custodian.create_data_keys(["s1", "s2"], AUTH)
    with custodian._db.transaction() as tx:
        wrapped = tx.execute("SELECT wrapped FROM data_keys WHERE subject_id='s1'").fetchone()[0]
        tx.execute("UPDATE data_keys SET wrapped = ? WHERE subject_id = 's2'", (wrapped,))
    with pytest.raises(IntegrityError):
        custodian.unwrap_data_key("s2", AUTH)
    custodian.close()


def test_destroyed_key_leaves_no_bytes_on_disk(tmp_path: Path) -> None:
    custodian = LocalCustodian("eu-ie", tmp_path / "keys")
    custodian.create_data_keys(["s1"], AUTH)
    with custodian._db.transaction() as tx:
        wrapped = bytes(tx.execute("SELECT wrapped FROM data_keys").fetchone()[0])
    custodian.destroy_data_key("s1", AUTH)
    custodian.close()
    for path in (tmp_path / "keys").iterdir():
        assert wrapped not in path.read_bytes(), path.name


def test_no_unwrap_without_a_ledger_reference(tmp_path: Path) -> None:
    custodian = LocalCustodian("eu-ie", tmp_path / "keys")
    custodian.create_data_keys(["s1"], AUTH)
    for unbound in (Authorization("d2", "read"), Authorization("d2", "read", ledger_index=-1)):
        with pytest.raises(AccessDenied):
            custodian.unwrap_data_key("s1", unbound)
    assert custodian.unwraps() == []
    custodian.close()


def test_every_unwrap_is_recorded_by_the_custodian(tmp_path: Path) -> None:
    custodian = LocalCustodian("eu-ie", tmp_path / "keys")
    custodian.create_data_keys(["s1", "s2"], AUTH)
    custodian.unwrap_data_key("s1", Authorization("d-a", "read", 11))
    custodian.unwrap_data_key("s2", Authorization("d-b", "write", 12))
    records = custodian.unwraps()
    assert [(r.decision_id, r.ledger_index, r.action) for r in records] == [
        ("d-a", 11, "read"),
        ("d-b", 12, "write"),
    ]
    assert records[0].subject_ref == custodian.subject_ref("s1")
    assert "s1" not in {r.subject_ref for r in records}  # a keyed reference, not the id
    assert custodian.unwraps(after=records[0].id) == records[1:]
    custodian.close()


def test_subject_ref_is_stable_and_unlinkable_after_shredding(tmp_path: Path) -> None:
    custodian = LocalCustodian("eu-ie", tmp_path / "keys")
    custodian.create_data_keys(["s1"], AUTH)
    ref = custodian.subject_ref("s1")
    assert ref == custodian.subject_ref("s1")
    other = LocalCustodian("eu-no", tmp_path / "other-keys")
    other.create_data_keys(["s1"], AUTH)
    assert other.subject_ref("s1") != ref  # regions do not share references
    custodian.destroy_data_key("s1", AUTH)
    assert custodian.subject_ref("s1") != ref  # the salt is gone: old entries unlinkable
    custodian.close()
    other.close()


def test_keys_of_the_rowid_keyring_are_carried_over(tmp_path: Path) -> None:
    """A keyring whose data keys sit in the first schema's rowid table opens with every
    key, destroyed mark and subject ref as it was, in the rebuilt table."""
    custodian = LocalCustodian("eu-ie", tmp_path / "keys")
    keys = custodian.create_data_keys(["s1", "s2", "s3"], AUTH)
    custodian.destroy_data_key("s2", AUTH)
    ref = custodian.subject_ref("s1")
    custodian.close()
    conn = sqlite3.connect(tmp_path / "keys" / "keyring.db", isolation_level=None)
    conn.execute("BEGIN")
    rows = conn.execute("SELECT * FROM data_keys").fetchall()
    conn.execute("DROP TABLE data_keys")
    conn.execute(
        "CREATE TABLE data_keys (subject_id TEXT PRIMARY KEY, kek_id INTEGER NOT NULL,"
        " wrapped BLOB NOT NULL, ref_salt BLOB NOT NULL, destroyed INTEGER NOT NULL DEFAULT 0)"
    )
    conn.executemany("INSERT INTO data_keys VALUES (?, ?, ?, ?, ?)", rows)
    conn.execute("DELETE FROM schema_migrations WHERE component = 'keyring' AND version = 3")
    conn.execute("COMMIT")
    conn.close()
    custodian = LocalCustodian("eu-ie", tmp_path / "keys")
    try:
        (sql,) = custodian._db.query("SELECT sql FROM sqlite_master WHERE name = 'data_keys'")[0]
        assert "WITHOUT ROWID" in sql
        got = custodian.unwrap_data_keys([(s, AUTH) for s in ("s1", "s2", "s3")])
        assert (got["s1"], got["s3"]) == (keys["s1"], keys["s3"])
        assert isinstance(got["s2"], KeyDestroyed)
        assert custodian.subject_ref("s1") == ref
    finally:
        custodian.close()


def test_the_unwraps_of_a_page_are_one_stored_group_of_records(tmp_path: Path) -> None:
    """An export page's unwraps (one call, one decision) are kept as one row, and still
    come back one record per subject, in order, with ids of their own that page across
    the rows however `after` and `limit` cut them."""
    custodian = LocalCustodian("eu-ie", tmp_path / "keys")
    subjects = [f"s{n}" for n in range(10)]
    custodian.create_data_keys(subjects, AUTH)
    page = Authorization("d-export", "transfer", 40)
    custodian.unwrap_data_keys([(s, page) for s in subjects[:7]])
    custodian.unwrap_data_key(subjects[7], Authorization("d-read", "read", 41))
    custodian.unwrap_data_keys([(s, page) for s in subjects[8:]])
    try:
        records = custodian.unwraps()
        assert [r.id for r in records] == list(range(1, 11))
        assert [r.subject_ref for r in records] == [custodian.subject_ref(s) for s in subjects]
        assert [r.decision_id for r in records] == ["d-export"] * 7 + ["d-read"] + ["d-export"] * 2
        assert {(r.ledger_index, r.action) for r in records[:7]} == {(40, "transfer")}
        assert custodian._db.query("SELECT count(*) FROM unwrap_groups") == [(3,)]
        assert custodian.unwraps(after=3, limit=2) == records[3:5]  # inside the first group
        assert custodian.unwraps(after=5, limit=4) == records[5:9]  # across all three
        assert custodian.unwraps(after=10) == []
    finally:
        custodian.close()


def test_unwrap_records_of_the_row_per_unwrap_table_are_carried_over(tmp_path: Path) -> None:
    """A keyring that kept one row per unwrap opens with every record as it was, and new
    unwraps get ids after the old ones."""
    custodian = LocalCustodian("eu-ie", tmp_path / "keys")
    custodian.create_data_keys(["s1", "s2"], AUTH)
    custodian.unwrap_data_keys([("s1", AUTH), ("s2", AUTH)])
    custodian.unwrap_data_key("s2", Authorization("d2", "read", 8))
    before = custodian.unwraps()
    custodian.close()
    conn = sqlite3.connect(tmp_path / "keys" / "keyring.db", isolation_level=None)
    conn.execute("BEGIN")
    conn.execute("DROP TABLE unwrap_groups")
    conn.execute(
        "CREATE TABLE unwraps (id INTEGER PRIMARY KEY AUTOINCREMENT, subject_ref TEXT NOT NULL,"
        " decision_id TEXT NOT NULL, ledger_index INTEGER NOT NULL, action TEXT NOT NULL,"
        " unwrapped_at TEXT NOT NULL)"
    )
    conn.executemany(
        "INSERT INTO unwraps VALUES (?, ?, ?, ?, ?, ?)",
        [(r.id, r.subject_ref, r.decision_id, r.ledger_index, r.action, r.unwrapped_at)
         for r in before],
    )  # fmt: skip
    conn.execute("DELETE FROM schema_migrations WHERE component = 'keyring' AND version >= 4")
    conn.execute("COMMIT")
    conn.close()
    custodian = LocalCustodian("eu-ie", tmp_path / "keys")
    try:
        assert custodian.unwraps() == before
        custodian.unwrap_data_key("s1", Authorization("d3", "read", 9))
        assert [r.id for r in custodian.unwraps()] == [1, 2, 3, 4]
    finally:
        custodian.close()


@pytest.mark.parametrize("spread", [1, 5], ids=["dense", "sparse"])
def test_ascending_ids_read_as_a_range_unwrap_as_by_id(tmp_path: Path, spread: int) -> None:
    # An export's page asks for ids in order: the custodian reads them as a range of the
    # keyring. Dense: the range holds only them. Sparse: four other subjects between
    # each two, more than the range read takes, so the rest are looked up by id.
    custodian = LocalCustodian("eu-ie", tmp_path / "keys")
    everyone = [f"{n:032x}" for n in range(300 * spread)]
    keys = custodian.create_data_keys(everyone, AUTH)
    asked = everyone[::spread]
    custodian.destroy_data_keys(asked[10:13], AUTH)
    asked = [*asked, "f" * 32]  # no key at all
    got = custodian.unwrap_data_keys([(sid, AUTH) for sid in asked])
    assert set(got) == set(asked)
    for sid in asked:
        if sid in asked[10:13] or sid == "f" * 32:
            assert isinstance(got[sid], KeyDestroyed), sid
        else:
            assert got[sid] == keys[sid], sid

    # The same answers as one id at a time, and every unwrap that gave a key recorded.
    def plain(out: Mapping[str, bytes | KeyDestroyed]) -> dict[str, bytes | None]:
        return {sid: key if isinstance(key, bytes) else None for sid, key in out.items()}

    by_id = custodian.unwrap_data_keys([(sid, AUTH) for sid in reversed(asked)])
    assert plain(by_id) == plain(got)
    recorded = [r.subject_ref for r in custodian.unwraps(limit=10_000)]
    live = [sid for sid in asked if isinstance(got[sid], bytes)]
    assert len(recorded) == 2 * len(live)
    assert set(recorded) == set(custodian.subject_refs(live).values())
    custodian.close()


def test_a_batch_reads_unwraps_are_one_run_of_decisions(tmp_path: Path) -> None:
    """A batch read unwraps each record against its own decision, at consecutive ledger
    entries: one stored row, and every record comes back with its own decision and entry.
    A gap in the entries, another moment or an id that is not 32 characters starts a
    new row."""
    custodian = LocalCustodian("eu-ie", tmp_path / "keys")
    subjects = [f"s{n}" for n in range(8)]
    custodian.create_data_keys(subjects, AUTH)
    decisions = [f"{n:032x}" for n in range(8)]
    batch = [(s, Authorization(d, "read", 100 + n))
             for n, (s, d) in enumerate(zip(subjects, decisions, strict=True))]  # fmt: skip
    batch[6] = (subjects[6], Authorization(decisions[6], "read", 200))  # not the next entry
    custodian.unwrap_data_keys(batch)
    custodian.unwrap_data_keys([(subjects[7], Authorization("short-id", "read", 201))])
    try:
        records = custodian.unwraps()
        assert [(r.decision_id, r.ledger_index) for r in records] == [
            *[(decisions[n], 100 + n) for n in range(6)],
            (decisions[6], 200),
            (decisions[7], 107),
            ("short-id", 201),
        ]
        assert [r.subject_ref for r in records] == [
            custodian.subject_ref(s) for s in [*subjects, subjects[7]]
        ]
        # 0-5 are one run; 6 (entry 200) and 7 (entry 107) each start one, and so does
        # the short id.
        assert custodian._db.query("SELECT count(*) FROM unwrap_groups") == [(4,)]
        assert custodian.unwraps(after=2, limit=3) == records[2:5]  # inside the run
    finally:
        custodian.close()


def test_a_run_whose_decisions_do_not_fit_its_count_is_refused(tmp_path: Path) -> None:
    custodian = LocalCustodian("eu-ie", tmp_path / "keys")
    custodian.create_data_keys(["s1", "s2"], AUTH)
    custodian.unwrap_data_keys(
        [("s1", Authorization("a" * 32, "read", 5)), ("s2", Authorization("b" * 32, "read", 6))]
    )
    try:
        with custodian._db.transaction() as tx:  # a tampered row (the CHECK held it off)
            tx.execute("PRAGMA ignore_check_constraints = ON")
            tx.execute("UPDATE unwrap_groups SET decision_ids = substr(decision_ids, 1, 40)")
        with pytest.raises(IntegrityError, match="malformed"):
            custodian.unwraps()
    finally:
        custodian.close()
