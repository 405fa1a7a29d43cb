"""Property tests of RFC 9162 Merkle maths against a naive recursive tree hash."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from functools import cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domicile.errors import EntryNotFound, LedgerError, ProofError
from domicile.ledger.merkle import (
    EMPTY_ROOT,
    CompactRange,
    Node,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    node_reader_from_leaves,
    root_from_leaves,
    root_hash,
    verify_consistency,
    verify_inclusion,
)

PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- an independent, deliberately naive model of RFC 9162 §2.1 -------------


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _largest_power_below(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def naive_mth(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) exactly as RFC 9162 §2.1.1 defines it, over leaf hashes."""
    if not leaves:
        return _h(b"")
    if len(leaves) == 1:
        return leaves[0]
    k = _largest_power_below(len(leaves))
    return _h(b"\x01" + naive_mth(leaves[:k]) + naive_mth(leaves[k:]))


def naive_path(m: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]) of RFC 9162 §2.1.3.1."""
    if len(leaves) <= 1:
        return []
    k = _largest_power_below(len(leaves))
    if m < k:
        return [*naive_path(m, leaves[:k]), naive_mth(leaves[k:])]
    return [*naive_path(m - k, leaves[k:]), naive_mth(leaves[:k])]


def naive_subproof(m: int, leaves: Sequence[bytes], complete: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b) of RFC 9162 §2.1.4.1."""
    n = len(leaves)
    if m == n:
        return [] if complete else [naive_mth(leaves)]
    k = _largest_power_below(n)
    if m <= k:
        return [*naive_subproof(m, leaves[:k], complete), naive_mth(leaves[k:])]
    return [*naive_subproof(m - k, leaves[k:], False), naive_mth(leaves[:k])]


def naive_reader(leaves: Sequence[bytes]) -> Callable[[int, int], bytes]:
    @cache
    def get_node(level: int, index: int) -> bytes:
        start = index << level
        assert start + (1 << level) <= len(leaves), "reader asked for an incomplete subtree"
        return naive_mth(leaves[start : start + (1 << level)])

    return get_node


def make_leaves(n: int, salt: int = 0) -> list[bytes]:
    return [leaf_hash(b"%d/%d" % (salt, i)) for i in range(n)]


def flip(value: bytes, bit: int) -> bytes:
    data = bytearray(value)
    data[bit // 8] ^= 1 << (bit % 8)
    return bytes(data)


# --- hashing ---------------------------------------------------------------


def test_hashes_follow_rfc_9162() -> None:
    assert leaf_hash(b"") == _h(b"\x00")
    assert leaf_hash(b"abc") == _h(b"\x00abc")
    left, right = _h(b"l"), _h(b"r")
    assert node_hash(left, right) == _h(b"\x01" + left + right)
    assert _h(b"") == EMPTY_ROOT
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_known_root_of_rfc_6962_test_tree() -> None:
    # The eight-leaf test tree of transparency-dev/merkle (root of D[8]).
    inputs = [
        b"",
        b"\x00",
        b"\x10",
        b"\x20\x21",
        b"\x30\x31",
        b"\x40\x41\x42\x43",
        b"\x50\x51\x52\x53\x54\x55\x56\x57",
        b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
    ]
    root = root_from_leaves(leaf_hash(d) for d in inputs)
    assert root.hex() == "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"


@given(st.integers(min_value=0, max_value=3000))
@PROPERTY
def test_roots_match_naive_mth(size: int) -> None:
    leaves = make_leaves(size)
    want = naive_mth(leaves)
    assert root_from_leaves(leaves) == want
    assert root_hash(size, node_reader_from_leaves(leaves)) == want
    assert root_hash(size, naive_reader(leaves)) == want


# --- inclusion -------------------------------------------------------------


@given(st.data())
@PROPERTY
def test_inclusion_proofs_verify(data: st.DataObject) -> None:
    size = data.draw(st.integers(min_value=1, max_value=4000), label="size")
    leaves = make_leaves(size)
    root = naive_mth(leaves)
    reader = node_reader_from_leaves(leaves)
    for _ in range(4):
        index = data.draw(st.integers(min_value=0, max_value=size - 1), label="index")
        proof = inclusion_proof(index, size, reader)
        assert proof == naive_path(index, leaves)
        assert proof == inclusion_proof(index, size, naive_reader(leaves))
        verify_inclusion(leaves[index], index, size, proof, root)


@given(st.data())
@PROPERTY
def test_inclusion_proofs_reject_any_bit_flip(data: st.DataObject) -> None:
    size = data.draw(st.integers(min_value=1, max_value=3000), label="size")
    leaves = make_leaves(size, salt=1)
    root = naive_mth(leaves)
    index = data.draw(st.integers(min_value=0, max_value=size - 1), label="index")
    proof = inclusion_proof(index, size, node_reader_from_leaves(leaves))
    leaf = leaves[index]
    bit = data.draw(st.integers(min_value=0, max_value=255), label="bit")
    with pytest.raises(ProofError):
        verify_inclusion(flip(leaf, bit), index, size, proof, root)
    with pytest.raises(ProofError):
        verify_inclusion(leaf, index, size, proof, flip(root, bit))
    if proof:
        which = data.draw(st.integers(min_value=0, max_value=len(proof) - 1), label="which")
        bad = [*proof]
        bad[which] = flip(bad[which], bit)
        with pytest.raises(ProofError):
            verify_inclusion(leaf, index, size, bad, root)


def test_every_inclusion_proof_of_small_trees() -> None:
    for size in range(1, 24):
        leaves = make_leaves(size, salt=2)
        root = naive_mth(leaves)
        reader = node_reader_from_leaves(leaves)
        for index in range(size):
            proof = inclusion_proof(index, size, reader)
            verify_inclusion(leaves[index], index, size, proof, root)
            _assert_inclusion_mutants_fail(leaves, index, size, proof, root)


def _assert_inclusion_mutants_fail(
    leaves: list[bytes], index: int, size: int, proof: list[bytes], root: bytes
) -> None:
    # Only mutants that are false whatever the tree: a proof's length is fixed
    # by (index, size), and distinct leaves and hashes never collide. (Changing
    # the size alone can yield a true statement about another tree.)
    leaf = leaves[index]
    mutants: list[tuple[bytes, int, int, list[bytes], bytes]] = [
        (leaf, index, size, [*proof, root], root),
        (leaf, size, size, proof, root),
    ]
    if size > 1:
        mutants.append((leaves[(index + 1) % size], index, size, proof, root))
    if proof:
        mutants.append((leaf, index, size, proof[:-1], root))
        mutants.append((leaf, index, size, proof[1:], root))
    for bit in range(0, 256, 5):
        mutants.append((flip(leaf, bit), index, size, proof, root))
        mutants.append((leaf, index, size, proof, flip(root, bit)))
        for i in range(len(proof)):
            bad = [*proof[:i], flip(proof[i], bit), *proof[i + 1 :]]
            mutants.append((leaf, index, size, bad, root))
    for args in mutants:
        with pytest.raises(ProofError):
            verify_inclusion(*args)


def test_inclusion_input_checks() -> None:
    leaves = make_leaves(5)
    reader = node_reader_from_leaves(leaves)
    root = naive_mth(leaves)
    for index, size in [(5, 5), (-1, 5), (0, 0)]:
        with pytest.raises(ProofError):
            inclusion_proof(index, size, reader)
        with pytest.raises(ProofError):
            verify_inclusion(leaves[0], index, size, [], root)
    proof = inclusion_proof(1, 5, reader)
    with pytest.raises(ProofError):
        verify_inclusion(leaves[1][:31], 1, 5, proof, root)
    with pytest.raises(ProofError):
        verify_inclusion(leaves[1], 1, 5, [proof[0] + b"\x00", *proof[1:]], root)


# --- consistency -----------------------------------------------------------


@given(st.data())
@PROPERTY
def test_consistency_proofs_verify(data: st.DataObject) -> None:
    size2 = data.draw(st.integers(min_value=1, max_value=4000), label="size2")
    leaves = make_leaves(size2, salt=3)
    reader = node_reader_from_leaves(leaves)
    root2 = naive_mth(leaves)
    for _ in range(4):
        size1 = data.draw(st.integers(min_value=1, max_value=size2), label="size1")
        root1 = naive_mth(leaves[:size1])
        proof = consistency_proof(size1, size2, reader)
        assert proof == naive_subproof(size1, leaves, True)
        assert proof == consistency_proof(size1, size2, naive_reader(leaves))
        verify_consistency(size1, size2, proof, root1, root2)


@given(st.data())
@PROPERTY
def test_consistency_proofs_reject_any_bit_flip(data: st.DataObject) -> None:
    size2 = data.draw(st.integers(min_value=2, max_value=3000), label="size2")
    size1 = data.draw(st.integers(min_value=1, max_value=size2 - 1), label="size1")
    leaves = make_leaves(size2, salt=4)
    root1, root2 = naive_mth(leaves[:size1]), naive_mth(leaves)
    proof = consistency_proof(size1, size2, node_reader_from_leaves(leaves))
    bit = data.draw(st.integers(min_value=0, max_value=255), label="bit")
    with pytest.raises(ProofError):
        verify_consistency(size1, size2, proof, flip(root1, bit), root2)
    with pytest.raises(ProofError):
        verify_consistency(size1, size2, proof, root1, flip(root2, bit))
    which = data.draw(st.integers(min_value=0, max_value=len(proof) - 1), label="which")
    bad = [*proof]
    bad[which] = flip(bad[which], bit)
    with pytest.raises(ProofError):
        verify_consistency(size1, size2, bad, root1, root2)


def test_every_consistency_proof_of_small_trees() -> None:
    for size2 in range(1, 34):
        leaves = make_leaves(size2, salt=5)
        reader = node_reader_from_leaves(leaves)
        root2 = naive_mth(leaves)
        for size1 in range(1, size2 + 1):
            root1 = naive_mth(leaves[:size1])
            proof = consistency_proof(size1, size2, reader)
            verify_consistency(size1, size2, proof, root1, root2)
            _assert_consistency_mutants_fail(size1, size2, proof, root1, root2)


def _assert_consistency_mutants_fail(
    size1: int, size2: int, proof: list[bytes], root1: bytes, root2: bytes
) -> None:
    mutants: list[tuple[int, int, list[bytes], bytes, bytes]] = [
        (size1, size2, [*proof, root1], root1, root2),
        (size2 + 1, size2, proof, root1, root2),
        (0, size2, proof, root1, root2),
    ]
    if size1 != size2:
        mutants.append((size1, size2, proof, root2, root1))
        mutants.append((size1, size2, proof[:-1], root1, root2))
        mutants.append((size1, size2, proof[1:], root1, root2))
    for bit in range(0, 256, 7):
        mutants.append((size1, size2, proof, flip(root1, bit), root2))
        mutants.append((size1, size2, proof, root1, flip(root2, bit)))
        for i in range(len(proof)):
            bad = [*proof[:i], flip(proof[i], bit), *proof[i + 1 :]]
            mutants.append((size1, size2, bad, root1, root2))
    for args in mutants:
        with pytest.raises(ProofError):
            verify_consistency(*args)


def test_consistency_edge_cases() -> None:
    leaves = make_leaves(4)
    reader = node_reader_from_leaves(leaves)
    root = naive_mth(leaves)
    assert consistency_proof(4, 4, reader) == []
    verify_consistency(4, 4, [], root, root)
    for size1, size2 in [(0, 4), (0, 0), (5, 4), (-1, 4)]:
        with pytest.raises(ProofError):
            consistency_proof(size1, size2, reader)
    # A consistency proof from the empty tree proves nothing (RFC 9162 §2.1.4.2: 0 < first).
    with pytest.raises(ProofError):
        verify_consistency(0, 4, [], EMPTY_ROOT, root)
    with pytest.raises(ProofError):
        verify_consistency(0, 0, [], EMPTY_ROOT, EMPTY_ROOT)
    with pytest.raises(ProofError):
        verify_consistency(4, 4, [root], root, root)
    with pytest.raises(ProofError):
        verify_consistency(2, 4, [], naive_mth(leaves[:2]), root)


# --- stored subtrees at scale ----------------------------------------------


def _periodic_reader(calls: list[tuple[int, int]]) -> Callable[[int, int], bytes]:
    """A consistent tree of any size whose leaf i is leaf_hash(i % 8).

    Every perfect subtree of 8 or more leaves then has the same hash per level,
    so the reader answers any level in O(1) without materialising the tree.
    """
    base = [leaf_hash(b"%d" % i) for i in range(8)]
    small = node_reader_from_leaves(base)
    perfect = [small(3, 0)]
    for _ in range(64):
        perfect.append(node_hash(perfect[-1], perfect[-1]))

    def get_node(level: int, index: int) -> bytes:
        calls.append((level, index))
        if level >= 3:
            return perfect[level - 3]
        return small(level, index % (8 >> level))

    return get_node


@given(st.data())
@settings(max_examples=40, deadline=None)
def test_proofs_at_ten_million_entries_use_few_node_reads(data: st.DataObject) -> None:
    calls: list[tuple[int, int]] = []
    reader = _periodic_reader(calls)
    size2 = data.draw(st.integers(min_value=9_000_000, max_value=12_000_000), label="size2")
    size1 = data.draw(st.integers(min_value=1, max_value=size2), label="size1")
    index = data.draw(st.integers(min_value=0, max_value=size2 - 1), label="index")
    root1, root2 = root_hash(size1, reader), root_hash(size2, reader)
    calls.clear()
    proof = inclusion_proof(index, size2, reader)
    assert len(calls) <= 2 * size2.bit_length()
    verify_inclusion(reader(0, index), index, size2, proof, root2)
    calls.clear()
    proof = consistency_proof(size1, size2, reader)
    assert len(calls) <= 3 * size2.bit_length()
    verify_consistency(size1, size2, proof, root1, root2)


# --- compact ranges --------------------------------------------------------


@given(st.integers(min_value=0, max_value=2000), st.integers(min_value=1, max_value=300))
@PROPERTY
def test_compact_range_roots_and_completed_nodes(size: int, batch: int) -> None:
    leaves = make_leaves(size, salt=6)
    naive = naive_reader(leaves)
    compact = CompactRange()
    seen: list[Node] = []
    # Check the root after about ten of the batches (naive roots cost O(n) each).
    every = max(1, size // batch // 10)
    for number, start in enumerate(range(0, size, batch)):
        seen.extend(compact.extend(leaves[start : start + batch]))
        assert compact.size == min(size, start + batch)
        if number % every == 0:
            assert compact.root() == naive_mth(leaves[: compact.size])
    assert compact.root() == naive_mth(leaves)
    # Every perfect subtree of the tree is reported exactly once, with its true hash.
    want = {(lvl, i) for lvl in range(size.bit_length()) for i in range(size >> lvl)}
    assert [(n.level, n.index) for n in seen] == sorted(
        want, key=lambda li: ((li[1] + 1) << li[0], li[0])
    )
    for node in seen:
        assert node.hash == naive(node.level, node.index)
    # The frontier rebuilds from stored subtrees and carries on identically.
    rebuilt = CompactRange.from_node_reader(size, naive)
    assert rebuilt.nodes == compact.nodes
    assert rebuilt.root() == compact.root()
    extra = make_leaves(3, salt=7)
    assert rebuilt.extend(extra) == compact.copy().extend(extra)


@given(
    st.integers(min_value=0, max_value=1200),
    st.lists(st.integers(min_value=0, max_value=300), min_size=1, max_size=6),
)
@PROPERTY
def test_extend_runs_reports_what_extend_reports(size: int, batches: list[int]) -> None:
    leaves = make_leaves(size + sum(batches), salt=8)
    by_leaf, by_level = CompactRange(), CompactRange()
    by_leaf.extend(leaves[:size])
    by_level.extend(leaves[:size], record=False)
    at = size
    for batch in batches:
        chunk = leaves[at : at + batch]
        at += batch
        nodes = by_leaf.extend(chunk)
        runs = by_level.extend_runs(chunk)
        flat = {
            (level, start + i): h
            for level, (start, hashes) in enumerate(runs)
            for i, h in enumerate(hashes)
        }
        assert flat == {(n.level, n.index): n.hash for n in nodes}
        assert all(hashes for _, hashes in runs)  # no empty level in the middle
        assert by_level.size == by_leaf.size == at
        assert by_level.nodes == by_leaf.nodes
        assert by_level.root() == by_leaf.root() == naive_mth(leaves[:at])


def test_extend_runs_refuses_a_malformed_leaf_and_keeps_the_range() -> None:
    compact = CompactRange()
    compact.extend_runs(make_leaves(5))
    with pytest.raises(LedgerError, match="leaf hash must be 32 bytes"):
        compact.extend_runs([*make_leaves(2, salt=9), b"short"])
    assert compact.size == 5


def test_compact_range_append_reports_completed_subtrees() -> None:
    leaves = make_leaves(8)
    compact = CompactRange()
    assert compact.root() == EMPTY_ROOT
    assert compact.append(leaves[0]) == [Node(0, 0, leaves[0])]
    completed = compact.append(leaves[1])
    assert completed == [Node(0, 1, leaves[1]), Node(1, 0, node_hash(leaves[0], leaves[1]))]
    compact.append(leaves[2])
    completed = compact.append(leaves[3])
    assert [(n.level, n.index) for n in completed] == [(0, 3), (1, 1), (2, 0)]
    assert completed[-1].hash == naive_mth(leaves[:4])
    assert compact.nodes == (Node(2, 0, naive_mth(leaves[:4])),)
    assert compact.extend(leaves[4:], record=False) == []
    assert compact.root() == naive_mth(leaves)
    assert repr(compact) == "CompactRange(size=8)"


def test_compact_range_rejects_bad_state() -> None:
    with pytest.raises(LedgerError):
        CompactRange(3, [EMPTY_ROOT])
    with pytest.raises(LedgerError):
        CompactRange(-1, [])
    with pytest.raises(LedgerError):
        CompactRange(1, [b"short"])
    with pytest.raises(LedgerError):
        CompactRange().append(b"short")


def test_node_reader_from_leaves_refuses_incomplete_subtrees() -> None:
    reader = node_reader_from_leaves(make_leaves(5))
    reader(2, 0)
    for level, index in [(2, 1), (3, 0), (-1, 0), (0, -1), (0, 5)]:
        with pytest.raises(EntryNotFound):
            reader(level, index)


def test_bad_stored_hash_is_a_ledger_error() -> None:
    with pytest.raises(LedgerError):
        root_hash(3, lambda level, index: b"short")
    with pytest.raises(ProofError):
        root_hash(-1, node_reader_from_leaves([]))
    assert root_hash(0, node_reader_from_leaves([])) == EMPTY_ROOT
