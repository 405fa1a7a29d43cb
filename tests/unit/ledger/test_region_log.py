"""The region log on SQLite and PostgreSQL: roots, proofs, tiles, checkpoints, tampering."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from domicile.errors import EntryNotFound, LedgerError, ProofError
from domicile.ledger.checkpoint import open_checkpoint
from domicile.ledger.fsck import verify_log
from domicile.ledger.log import RegionLog
from domicile.ledger.merkle import (
    leaf_hash,
    node_reader_from_leaves,
    root_from_leaves,
    verify_consistency,
    verify_inclusion,
)
from domicile.ledger.note import Ed25519Signer, generate_signer_key
from domicile.ledger.sequencer import Sequencer
from domicile.ledger.tiles import decode_tile, encode_bundle
from domicile.storage.database import open_database
from domicile.storage.url import StorageUrl

ORIGIN = "test.example/log/eu-ie"
SIGNER_KEY, VERIFIER_KEY = generate_signer_key(ORIGIN)


@pytest.fixture
def url(storage_url: StorageUrl) -> StorageUrl:
    """The store under test (tests/conftest.py)."""
    return storage_url


def open_log(url: StorageUrl) -> RegionLog:
    return RegionLog(ORIGIN, open_database(url), Ed25519Signer.from_key(SIGNER_KEY))


@pytest.fixture
def log(url: StorageUrl) -> Iterator[RegionLog]:
    region_log = open_log(url)
    yield region_log
    region_log.db.close()


def fill(log: RegionLog, count: int, seed: int = 7) -> list[bytes]:
    rng = random.Random(seed)
    start = log.size
    entries: list[bytes] = []
    while len(entries) < count:
        batch = [f"entry {len(entries) + i}".encode() for i in range(rng.randrange(1, 200))]
        batch = batch[: count - len(entries)]
        assert log.append(batch) == start + len(entries)
        entries += batch
    return entries


def test_roots_and_proofs_match_the_definition(log: RegionLog) -> None:
    entries = fill(log, 1300)
    leaves = [leaf_hash(e) for e in entries]
    for size in (1, 2, 255, 256, 257, 511, 512, 1000, 1300):
        root = root_from_leaves(leaves[:size])
        assert log.root(size) == root
        for index in {0, size // 3, size - 1}:
            verify_inclusion(leaves[index], index, size, log.inclusion_proof(index, size), root)
        if size > 1:
            verify_consistency(1, size, log.consistency_proof(1, size), log.root(1), root)
    verify_consistency(700, 1300, log.consistency_proof(700, 1300), log.root(700), log.root())


def test_tiles_hold_the_c2sp_hashes(log: RegionLog) -> None:
    entries = fill(log, 70_000 // 100)
    reader = node_reader_from_leaves([leaf_hash(e) for e in entries])
    full = decode_tile(log.tile(0, 1, 256), 256)
    assert full == [reader(0, 256 + i) for i in range(256)]
    partial = decode_tile(log.tile(0, 2, 700 - 512), 700 - 512)
    assert partial == [reader(0, 512 + i) for i in range(700 - 512)]
    level1 = decode_tile(log.tile(1, 0, 2), 2)
    assert level1 == [reader(8, 0), reader(8, 1)]
    with pytest.raises(EntryNotFound):
        log.tile(0, 2, 256)  # not that many leaves yet
    assert log.bundle(2) == entries[512:]
    assert log.entry(699) == entries[699]
    assert log.index_of(leaf_hash(entries[300])) == 300


def test_bundles_are_served_as_stored_cut_to_the_width_asked(log: RegionLog) -> None:
    entries = fill(log, 700)  # bundles 0 and 1 full, bundle 2 (the edge) holds 188
    for index, width in ((0, 256), (1, 1), (1, 100), (2, 188), (2, 5)):
        first = index * 256
        assert log.bundle_data(index, width) == encode_bundle(entries[first : first + width])
    reopened_edge = RegionLog(ORIGIN, log.db, log.signer)  # the edge read back from disk
    assert reopened_edge.bundle_data(2, 188) == log.bundle_data(2, 188)
    for index, width in ((2, 189), (0, 0), (3, 1)):
        with pytest.raises(EntryNotFound):
            log.bundle_data(index, width)


def test_every_entry_is_found_by_its_leaf_hash_as_the_log_grows(log: RegionLog) -> None:
    entries = fill(log, 300)
    # The index grows in steps that cut tiles anywhere, the last one still partial.
    assert log.index_leaves(limit=100) == 100
    assert log.index_leaves(limit=250) == 300
    more = [f"later {i}".encode() for i in range(500)]
    log.append(more)  # grows the partial tile the index already read
    entries += more
    entries.append(entries[42])  # a repeated entry is found at its first index
    log.append([entries[-1]])
    for index in range(0, len(entries) - 1, 7):
        assert log.index_of(leaf_hash(entries[index])) == index
    assert log.index_of(leaf_hash(entries[42])) == 42
    assert log.index_of(leaf_hash(entries[-2])) == len(entries) - 2
    with pytest.raises(EntryNotFound):
        log.index_of(leaf_hash(b"never appended"))


def test_a_leaf_index_of_the_old_shape_is_rebuilt(url: StorageUrl) -> None:
    first = open_log(url)
    entries = fill(first, 600)
    first.index_leaves()
    # The index as version 3 of the schema kept it: integer prefixes, and reaching the end.
    with first.db.transaction() as tx:
        tx.execute("DROP TABLE ledger_leaves")
        tx.execute(
            "CREATE TABLE ledger_leaves (prefix BIGINT, idx BIGINT, PRIMARY KEY (prefix, idx))"
        )
        tx.executemany(
            "INSERT INTO ledger_leaves (prefix, idx) VALUES (?, ?)",
            [
                (int.from_bytes(leaf_hash(e)[:8], "big", signed=True), i)
                for i, e in enumerate(entries)
            ],
        )
        tx.execute("DELETE FROM schema_migrations WHERE component = 'ledger' AND version = 4")
    first.db.close()
    again = open_log(url)
    try:
        # Found only if the migration dropped the old rows and the index was built again.
        assert again.index_of(leaf_hash(entries[417])) == 417
        assert again.index_of(leaf_hash(entries[0])) == 0
    finally:
        again.db.close()


def test_reopened_log_continues_the_same_tree(url: StorageUrl) -> None:
    first = open_log(url)
    entries = fill(first, 600)
    signed = first.sign_checkpoint()
    first.db.close()
    again = open_log(url)
    assert again.size == 600
    assert again.root() == signed.root
    more = [b"after restart"] * 300
    again.append(more)
    assert again.root() == root_from_leaves([leaf_hash(e) for e in entries + more])
    verify_log(again)
    again.db.close()


def test_checkpoints_are_signed_and_consistent(log: RegionLog) -> None:
    verifier = Ed25519Signer.from_key(SIGNER_KEY).verifier()
    fill(log, 10)
    first = log.sign_checkpoint()
    assert log.sign_checkpoint() == first  # no growth: the same checkpoint
    fill(log, 20)
    second = log.sign_checkpoint()
    cp1, _ = open_checkpoint(first.note, [verifier])
    cp2, _ = open_checkpoint(second.note, [verifier])
    assert (cp1.origin, cp1.size, cp2.size) == (ORIGIN, 10, 30)
    verify_consistency(10, 30, log.consistency_proof(10, 30), cp1.root_hash, cp2.root_hash)
    assert [c.size for c in log.checkpoints()] == [10, 30]


def test_sequencer_acknowledges_only_durable_entries(log: RegionLog) -> None:
    import threading

    sequencer = Sequencer(log)
    acked: dict[int, bytes] = {}
    lock = threading.Lock()

    def worker(n: int) -> None:
        for i in range(50):
            entry = f"worker {n} entry {i}".encode()
            index = sequencer.append([entry])
            with lock:
                acked[index] = entry

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(acked) == list(range(400))
    assert all(log.entry(i) == e for i, e in acked.items())
    verify_log(log)


# -- tampering: each edit of the stored log is detected -------------------------------


def _tamper(log: RegionLog, statement: str, params: tuple[object, ...] = ()) -> None:
    with log.db.transaction() as tx:
        tx.execute(statement, params)


def _bundle(log: RegionLog, index: int) -> bytes:
    with log.db.transaction(write=False) as tx:
        return bytes(
            tx.execute("SELECT data FROM ledger_bundles WHERE idx = ?", (index,)).fetchone()[0]
        )


def _encode(entries: list[bytes]) -> bytes:
    return b"".join(len(e).to_bytes(2, "big") + e for e in entries)


def _tampered(log: RegionLog, how: str, entries: list[bytes]) -> None:
    first = entries[:256]
    if how == "edited entry":
        _tamper(
            log,
            "UPDATE ledger_bundles SET data = ? WHERE idx = 0",
            (_encode([b"entry 0 EDITED", *first[1:]]),),
        )
    elif how == "deleted entry":
        _tamper(
            log,
            "UPDATE ledger_bundles SET data = ?, width = 255 WHERE idx = 0",
            (_encode(first[1:]),),
        )
    elif how == "reordered entries":
        _tamper(
            log,
            "UPDATE ledger_bundles SET data = ? WHERE idx = 0",
            (_encode([first[1], first[0], *first[2:]]),),
        )
    elif how == "inserted entry":
        _tamper(
            log,
            "UPDATE ledger_bundles SET data = ? WHERE idx = 0",
            (_encode([first[0], b"inserted", *first[1:255]]),),
        )
    elif how == "deleted bundle":
        _tamper(log, "DELETE FROM ledger_bundles WHERE idx = 1")
    elif how == "edited hash":
        with log.db.transaction(write=False) as tx:
            nodes = bytes(
                tx.execute("SELECT nodes FROM ledger_tiles WHERE level = 0 AND idx = 0").fetchone()[
                    0
                ]
            )
        flipped = bytes([nodes[0] ^ 1]) + nodes[1:]
        _tamper(log, "UPDATE ledger_tiles SET nodes = ? WHERE level = 0 AND idx = 0", (flipped,))
    elif how == "truncated log":
        _tamper(log, "DELETE FROM ledger_bundles WHERE idx = 2")
        _tamper(log, "UPDATE ledger_state SET size = 512")


TAMPERING = [
    "edited entry",
    "deleted entry",
    "reordered entries",
    "inserted entry",
    "deleted bundle",
    "edited hash",
    "truncated log",
]


@pytest.mark.parametrize("how", TAMPERING)
def test_tampering_is_detected(url: StorageUrl, how: str) -> None:
    log = open_log(url)
    entries = fill(log, 600)
    log.sign_checkpoint()
    verify_log(log)
    _tampered(log, how, entries)
    with pytest.raises(LedgerError):
        verify_log(log)
    log.db.close()
    if how == "truncated log":
        # A restarted log refuses to continue from a store smaller than what it signed.
        with pytest.raises(LedgerError):
            open_log(url)
    if how == "edited hash":
        # The restarted log serves a proof from the altered hash; it fails against the
        # signed root, so a client that verifies is not fooled.
        again = open_log(url)
        signed = again.latest_checkpoint()
        assert signed is not None
        with pytest.raises(ProofError):
            verify_inclusion(
                leaf_hash(entries[1]),
                1,
                signed.size,
                again.inclusion_proof(1, signed.size),
                signed.root,
            )
        again.db.close()


def test_two_writers_on_one_store_stay_consistent(url: StorageUrl) -> None:
    """A second process on the same store (e.g. a CLI beside the server) breaks nothing."""
    first, second = open_log(url), open_log(url)
    fill(first, 300)
    first.sign_checkpoint()
    assert second.append([b"from the second writer"] * 50) == 300  # it catches up first
    signed = first.sign_checkpoint()  # first refreshes before signing
    assert signed.size == 350
    assert second.sign_checkpoint().size == 350
    assert first.inclusion_proof(349, 350) == second.inclusion_proof(349, 350)
    verify_log(first)
    first.db.close()
    second.db.close()


def test_opening_while_another_writer_appends_and_signs(
    url: StorageUrl, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A log opened while another process appends and signs a checkpoint between the
    opener's reads is not mistaken for a rolled-back store, and signs on from there."""
    other = open_log(url)
    fill(other, 100)
    other.sign_checkpoint()
    loaded = RegionLog._load
    raced = []

    def load_then_race(self: RegionLog, tx: object, size: int) -> object:
        state = loaded(self, tx, size)  # type: ignore[arg-type]
        if not raced:  # the other writer moves on right after the opener read the size
            raced.append(other.append([b"meanwhile"] * 30))
            other.sign_checkpoint()
        return state

    monkeypatch.setattr(RegionLog, "_load", load_then_race)
    opened = open_log(url)
    monkeypatch.undo()
    assert raced == [100]
    assert opened.sign_checkpoint().size == 130
    verify_log(opened)
    opened.db.close()
    other.db.close()
