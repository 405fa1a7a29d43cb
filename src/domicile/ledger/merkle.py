"""RFC 9162 §2.1 Merkle tree maths: hashes, roots, proofs and compact ranges.

Everything here is pure. Trees are read through a :data:`NodeReader`,
``get_node(level, index)``, which returns the hash of the *perfect* subtree of
``2**level`` leaves starting at leaf ``index * 2**level`` (the "level L, index N"
addressing of C2SP tlog-tiles). Proofs and roots are assembled from O(log n)
such hashes, so a store that keeps the hashes of complete subtrees (for
example as tiles) serves proofs at any tree size without reading the leaves.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from domicile.errors import EntryNotFound, LedgerError, ProofError

HASH_SIZE = 32
"""Size in bytes of every tree hash (SHA-256)."""

EMPTY_ROOT = hashlib.sha256(b"").digest()
"""Root hash of the empty tree, MTH({}) = HASH() (RFC 9162 §2.1.1)."""

NodeReader = Callable[[int, int], bytes]
"""``get_node(level, index)``: hash of the perfect subtree of ``2**level`` leaves at ``index``."""

Run = tuple[int, list[bytes]]
"""Consecutive perfect subtrees of one level: the index of the first, and their hashes."""

_sha256 = hashlib.sha256


@dataclass(frozen=True, slots=True)
class Node:
    """Hash of the perfect subtree of ``2**level`` leaves starting at leaf ``index * 2**level``."""

    level: int
    index: int
    hash: bytes


def leaf_hash(data: bytes) -> bytes:
    """Return the leaf hash SHA-256(0x00 || data) of an entry (RFC 9162 §2.1.1)."""
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return the interior node hash SHA-256(0x01 || left || right) (RFC 9162 §2.1.1)."""
    return _sha256(b"\x01" + left + right).digest()


def root_from_leaves(leaf_hashes: Iterable[bytes]) -> bytes:
    """Return the root hash MTH of a tree given all its leaf hashes, in O(n)."""
    compact = CompactRange()
    compact.extend(leaf_hashes, record=False)
    return compact.root()


def root_hash(size: int, get_node: NodeReader) -> bytes:
    """Return the root hash of the tree of ``size`` leaves, read from perfect subtrees."""
    if size < 0:
        raise ProofError(f"tree size `{size}` is negative")
    if size == 0:
        return EMPTY_ROOT
    return _range_root(0, size, get_node)


def inclusion_proof(index: int, size: int, get_node: NodeReader) -> list[bytes]:
    """Return the inclusion proof PATH(index, D[size]) of RFC 9162 §2.1.3.1."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index `{index}` is not below tree size `{size}`")
    # Walk the recursion of §2.1.3.1 top-down; PATH lists the deepest sibling
    # first, so the collected siblings are reversed at the end.
    proof: list[bytes] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split_point(hi - lo)
        if index < lo + k:
            proof.append(_range_root(lo + k, hi, get_node))
            hi = lo + k
        else:
            proof.append(_range_root(lo, lo + k, get_node))
            lo += k
    proof.reverse()
    return proof


def consistency_proof(size1: int, size2: int, get_node: NodeReader) -> list[bytes]:
    """Return the consistency proof PROOF(size1, D[size2]) of RFC 9162 §2.1.4.1."""
    if not 0 < size1 <= size2:
        # §2.1.4 only defines proofs for 0 < first; a proof from the empty
        # tree proves nothing, and verify_consistency rejects one.
        raise ProofError(f"no consistency proof from size `{size1}` to size `{size2}`")
    proof: list[bytes] = []
    lo, hi = 0, size2
    complete = True  # the "b" flag of SUBPROOF: still on the path of the old root
    while size1 - lo != hi - lo:
        k = _split_point(hi - lo)
        if size1 - lo <= k:
            proof.append(_range_root(lo + k, hi, get_node))
            hi = lo + k
        else:
            proof.append(_range_root(lo, lo + k, get_node))
            lo += k
            complete = False
    if not complete:
        proof.append(_range_root(lo, hi, get_node))
    proof.reverse()
    return proof


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf`` is at ``index`` in the tree ``root`` of ``size`` (RFC 9162 §2.1.3.2)."""
    _check_hash(leaf, "leaf hash")
    _check_proof_hashes(proof)
    # Step 1: the index must be inside the tree.
    if not 0 <= index < size:
        raise ProofError(f"leaf index `{index}` is not below tree size `{size}`")
    computed = _root_from_inclusion(leaf, index, size, proof)
    if not hmac.compare_digest(computed, root):
        raise ProofError("inclusion proof does not lead to the expected root")


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Check that tree ``root2`` of ``size2`` extends ``root1`` of ``size1`` (RFC 9162 §2.1.4.2)."""
    if size1 < 0 or size2 < size1:
        raise ProofError(f"tree size `{size2}` is smaller than tree size `{size1}`")
    if size1 == 0:
        # §2.1.4.2 requires 0 < first: every tree extends the empty one, so
        # such a "proof" proves nothing and callers must not rely on it.
        raise ProofError("a consistency proof from the empty tree proves nothing")
    if size1 == size2:
        # SUBPROOF(m, D[m], true) = {} (§2.1.4.1): equal trees need no proof.
        if proof:
            raise ProofError("consistency proof between equal sizes must be empty")
        if not hmac.compare_digest(root1, root2):
            raise ProofError("roots of equal tree sizes differ")
        return
    # Step 1: an empty path fails.
    if not proof:
        raise ProofError("consistency proof is empty")
    _check_proof_hashes(proof)
    first_root, second_root = _roots_from_consistency(size1, size2, proof, root1)
    if not hmac.compare_digest(first_root, root1):
        raise ProofError("consistency proof does not lead to the first root")
    if not hmac.compare_digest(second_root, root2):
        raise ProofError("consistency proof does not lead to the second root")


def node_reader_from_leaves(leaf_hashes: Sequence[bytes]) -> NodeReader:
    """Return a :data:`NodeReader` over an in-memory list of leaf hashes (O(n) to build)."""
    levels: list[list[bytes]] = [list(leaf_hashes)]
    while len(levels[-1]) > 1:
        below = levels[-1]
        levels.append([node_hash(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)])

    def get_node(level: int, index: int) -> bytes:
        if not 0 <= level < len(levels) or not 0 <= index < len(levels[level]):
            raise EntryNotFound(f"no complete subtree at level `{level}` index `{index}`")
        return levels[level][index]

    return get_node


class CompactRange:
    """The frontier of a tree: one perfect-subtree hash per set bit of its size.

    Appending a leaf costs amortised O(1) hashes; the root costs O(log n).
    Each append reports the perfect subtrees it completed, leaf included,
    so a store can persist them (they are what tiles are made of).
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if size < 0:
            raise LedgerError(f"compact range size `{size}` is negative")
        if len(hashes) != size.bit_count():
            raise LedgerError(
                f"compact range of size `{size}` needs {size.bit_count()} hashes, got {len(hashes)}"
            )
        for h in hashes:
            _check_hash_for(h, LedgerError, "compact range hash")
        self._size = size
        # Largest (leftmost) subtree first, i.e. set bits of size from the top.
        self._hashes = list(hashes)

    @classmethod
    def from_node_reader(cls, size: int, get_node: NodeReader) -> CompactRange:
        """Rebuild the compact range of a stored tree of ``size`` leaves."""
        hashes: list[bytes] = []
        start = 0
        for level in reversed(range(size.bit_length())):
            if size >> level & 1:
                hashes.append(get_node(level, start >> level))
                start += 1 << level
        return cls(size, hashes)

    @property
    def size(self) -> int:
        """Number of leaves appended so far."""
        return self._size

    @property
    def nodes(self) -> tuple[Node, ...]:
        """The frontier as (level, index, hash), leftmost first."""
        out: list[Node] = []
        start = 0
        hashes = iter(self._hashes)
        for level in reversed(range(self._size.bit_length())):
            if self._size >> level & 1:
                out.append(Node(level, start >> level, next(hashes)))
                start += 1 << level
        return tuple(out)

    def append(self, leaf: bytes) -> list[Node]:
        """Append one leaf hash; return the perfect subtrees it completed, leaf first."""
        completed: list[Node] = []
        self._push(leaf, completed)
        return completed

    def extend(self, leaf_hashes: Iterable[bytes], *, record: bool = True) -> list[Node]:
        """Append leaf hashes in order; return every completed subtree (none unless ``record``)."""
        if not record:
            self.extend_runs(list(leaf_hashes))
            return []
        completed: list[Node] = []
        for leaf in leaf_hashes:
            self._push(leaf, completed)
        return completed

    def extend_runs(self, leaf_hashes: Sequence[bytes]) -> list[Run]:
        """Append leaf hashes in order; return the completed subtrees a level at a time.

        Item L is (index of the first, hashes) of the subtrees of level L that the
        leaves completed, which are consecutive; leaves are level 0. The same subtrees
        as `extend` reports, but hashed a level at a time, with no object per subtree:
        what a store that writes them as tiles wants for a batch.
        """
        for leaf in leaf_hashes:
            if len(leaf) != HASH_SIZE:
                raise LedgerError(f"leaf hash must be {HASH_SIZE} bytes, got {len(leaf)}")
        if not leaf_hashes:
            return []
        size, end = self._size, self._size + len(leaf_hashes)
        old = {node.level: node.hash for node in self.nodes}
        runs: list[Run] = []
        start, run, level = size, list(leaf_hashes), 0
        while run:
            runs.append((start, run))
            # An odd start pairs the run's first subtree with the frontier's on its left.
            pairs = [old[level], *run] if start & 1 else run
            run = [
                _sha256(b"\x01" + pairs[i] + pairs[i + 1]).digest()
                for i in range(0, len(pairs) - 1, 2)
            ]
            start >>= 1
            level += 1
        hashes: list[bytes] = []
        for lv in reversed(range(end.bit_length())):
            if end >> lv & 1:
                last = (end >> lv) - 1  # the frontier's subtree at this level
                if lv < len(runs) and last >= runs[lv][0]:
                    hashes.append(runs[lv][1][last - runs[lv][0]])
                else:
                    hashes.append(old[lv])  # not completed by these leaves: already there
        self._hashes = hashes
        self._size = end
        return runs

    def root(self) -> bytes:
        """Return the root hash MTH of the tree so far (RFC 9162 §2.1.1)."""
        if not self._hashes:
            return EMPTY_ROOT
        # MTH splits at the largest power of two, so the root folds the
        # frontier from the right: H(p1, H(p2, ... H(pk-1, pk))).
        root = self._hashes[-1]
        for h in reversed(self._hashes[:-1]):
            root = _sha256(b"\x01" + h + root).digest()
        return root

    def copy(self) -> CompactRange:
        """Return an independent copy."""
        return CompactRange(self._size, self._hashes)

    def _push(self, leaf: bytes, completed: list[Node] | None) -> None:
        if len(leaf) != HASH_SIZE:
            raise LedgerError(f"leaf hash must be {HASH_SIZE} bytes, got {len(leaf)}")
        index = self._size
        h = leaf
        if completed is not None:
            completed.append(Node(0, index, h))
        level = 0
        hashes = self._hashes
        # Each trailing one bit of the old size is a subtree the new leaf completes.
        bits = index
        while bits & 1:
            h = _sha256(b"\x01" + hashes.pop() + h).digest()
            bits >>= 1
            level += 1
            if completed is not None:
                completed.append(Node(level, index >> level, h))
        hashes.append(h)
        self._size = index + 1

    def __repr__(self) -> str:
        return f"CompactRange(size={self._size})"


def _split_point(n: int) -> int:
    """Largest power of two strictly below ``n`` (> 1): the k of RFC 9162 §2.1.1."""
    return 1 << ((n - 1).bit_length() - 1)


def _range_root(start: int, end: int, get_node: NodeReader) -> bytes:
    """MTH(D[start:end]) from perfect subtrees, for a range on a split of the tree.

    Callers only pass ranges met while recursing as RFC 9162 §2.1.1 does,
    whose start is a multiple of the largest power of two not above their
    length; so the decomposition below yields aligned perfect subtrees.
    """
    width = end - start
    if width & (width - 1) == 0:
        # Hot path: every sibling off the right edge of the tree is one perfect subtree.
        level = width.bit_length() - 1
        h = get_node(level, start >> level)
        if len(h) != HASH_SIZE:
            _check_hash_for(h, LedgerError, "stored subtree hash")
        return h
    hashes: list[bytes] = []
    while start < end:
        level = (end - start).bit_length() - 1
        h = get_node(level, start >> level)
        _check_hash_for(h, LedgerError, "stored subtree hash")
        hashes.append(h)
        start += 1 << level
    root = hashes[-1]
    for h in reversed(hashes[:-1]):
        root = node_hash(h, root)
    return root


def _root_from_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    """Steps 2–5 of RFC 9162 §2.1.3.2: the root implied by an inclusion proof."""
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        if sn == 0:
            raise ProofError("inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof is too short")
    return r


def _roots_from_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes
) -> tuple[bytes, bytes]:
    """Steps 2–7 of RFC 9162 §2.1.4.2: the two roots implied by a consistency proof."""
    path = list(proof)
    # Step 2: a power-of-two first tree is itself a node of the second one.
    if size1 & (size1 - 1) == 0:
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    # Step 4: skip the levels where the first tree's right border is complete.
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof is too short")
    return fr, sr


def _check_proof_hashes(proof: Sequence[bytes]) -> None:
    for i, h in enumerate(proof):
        _check_hash(h, f"proof hash {i}")


def _check_hash(value: bytes, what: str) -> None:
    _check_hash_for(value, ProofError, what)


def _check_hash_for(value: bytes, error: type[LedgerError], what: str) -> None:
    if not isinstance(value, bytes | bytearray) or len(value) != HASH_SIZE:
        size = len(value) if isinstance(value, bytes | bytearray) else "non-bytes"
        raise error(f"{what} must be {HASH_SIZE} bytes, got {size}")
