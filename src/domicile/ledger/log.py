"""A region's append-only Merkle log on SQLite or PostgreSQL: integrate, prove, checkpoint.

Storage is the C2SP tlog-tiles shape. Entry bundles of 256 entries, and hash tiles
that hold all 8 Merkle levels of a tile's subtree (the C2SP tile is the bottom row).
A proof then needs at most one stored tile per tile level and no hashing. A batch
of appends writes its bundles, its tiles and the new size in one transaction, so
the stored tree is always a whole tree. A checkpoint is signed only for the
integrated size, and only after the stored tree has reproduced the root of the
latest checkpoint signed before it. So the log never signs two inconsistent
checkpoints, across restarts too.
"""

from __future__ import annotations

import functools
import hmac
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from domicile.errors import EntryNotFound, LedgerError, PayloadTooLarge
from domicile.ledger.checkpoint import Checkpoint, parse_checkpoint, sign_checkpoint
from domicile.ledger.merkle import (
    CompactRange,
    Run,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root_hash,
)
from domicile.ledger.note import Ed25519Signer, parse_note
from domicile.ledger.tiles import (
    MAX_ENTRY_SIZE,
    TILE_HEIGHT,
    TILE_WIDTH,
    bundle_prefix,
    decode_bundle,
    encode_bundle,
)
from domicile.storage.database import Database, Tx
from domicile.storage.migrations import migrate

HASH = 32
ROWS = TILE_HEIGHT  # Merkle levels stored per tile


@functools.lru_cache(maxsize=512)
def row_offsets(width: int) -> tuple[int, ...]:
    """Byte offset of each row of a stored tile of `width` leaves (cached: proofs ask often)."""
    offsets, at = [], 0
    for k in range(ROWS):
        offsets.append(at)
        at += (width >> k) * HASH
    return tuple(offsets)


@dataclass(frozen=True)
class Tile:
    """A stored tile: its width and all its rows, concatenated."""

    index: int
    width: int
    nodes: bytes
    # The rows as hashes, kept when the tile was built from them (the rightmost tiles,
    # which every append grows), so growing does not split the blob again.
    known_rows: tuple[tuple[bytes, ...], ...] | None = field(
        default=None, compare=False, repr=False
    )

    def rows(self) -> list[list[bytes]]:
        """The tile's rows as new lists of hashes, bottom row first."""
        if self.known_rows is not None:
            return [list(row) for row in self.known_rows]
        offsets = row_offsets(self.width)
        return [
            [
                self.nodes[offsets[k] + i * HASH : offsets[k] + (i + 1) * HASH]
                for i in range(self.width >> k)
            ]
            for k in range(ROWS)
        ]


@dataclass(frozen=True)
class _State:
    """An immutable snapshot of the integrated tree; swapped whole after each commit."""

    size: int
    compact: CompactRange
    edge_tiles: dict[int, Tile] = field(default_factory=dict)  # rightmost tile per level
    edge_bundle: tuple[int, tuple[bytes, ...], bytes] = (0, (), b"")  # rightmost, encoded


@dataclass(frozen=True)
class SignedCheckpoint:
    """A checkpoint the log signed, with its note text."""

    size: int
    root: bytes
    note: str


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class RegionLog:
    """One region's log: the only writer of its tables (one sequencer per region)."""

    def __init__(
        self, origin: str, db: Database, signer: Ed25519Signer, *, tile_cache: int = 65536
    ) -> None:
        self.origin = origin
        self.db = db  # owned from here on: closed if the log cannot open
        self.signer = signer
        self._write_lock = threading.Lock()
        self._sign_lock = threading.Lock()
        self._index_lock = threading.Lock()
        self._cache: dict[tuple[int, int], Tile] = {}
        self._cache_size = tile_cache
        self._cache_lock = threading.Lock()
        try:
            self._open()
        except BaseException:
            db.close()
            raise

    def _open(self) -> None:
        migrate(self.db, "ledger", "domicile.ledger")
        # The checkpoint is read before the size: a checkpoint is only ever signed for a
        # committed size, so a size read after it is at least as large, even while
        # another process on the same store appends and signs in between.
        latest = self.latest_checkpoint()
        with self.db.transaction(write=False) as tx:
            self._state = self._load(tx, self._stored_size(tx))
        if latest is not None:
            self._verify_stored_tree(latest)

    # -- loading --------------------------------------------------------------------

    def _stored_size(self, tx: Tx, *, lock: bool = False) -> int:
        clause = " FOR UPDATE" if lock and self.db.dialect == "postgres" else ""
        row = tx.execute("SELECT size FROM ledger_state WHERE id = 1" + clause).fetchone()
        return int(row[0])

    def _load(self, tx: Tx, size: int) -> _State:
        edge_tiles: dict[int, Tile] = {}
        level, count = 0, size
        while count > 0:
            index = (count - 1) >> TILE_HEIGHT
            tile = self._read_tile(tx, level, index)
            if tile is None:
                raise LedgerError(f"log `{self.origin}` is missing tile {level}/{index}")
            edge_tiles[level] = tile
            count >>= TILE_HEIGHT
            level += 1
        bundle: tuple[int, tuple[bytes, ...], bytes] = (0, (), b"")
        if size:
            index = (size - 1) >> TILE_HEIGHT
            row = tx.execute(
                "SELECT width, data FROM ledger_bundles WHERE idx = ?", (index,)
            ).fetchone()
            if row is None:
                raise LedgerError(f"log `{self.origin}` is missing entry bundle {index}")
            data = bytes(row[1])
            bundle = (index, tuple(decode_bundle(data, int(row[0]))), data)
        state = _State(size, CompactRange(), edge_tiles, bundle)
        compact = CompactRange.from_node_reader(size, lambda lv, ix: self._node(state, lv, ix))
        return _State(size, compact, edge_tiles, bundle)

    def _read_tile(self, tx: Tx, level: int, index: int) -> Tile | None:
        row = tx.execute(
            "SELECT width, nodes FROM ledger_tiles WHERE level = ? AND idx = ?", (level, index)
        ).fetchone()
        if row is None:
            return None
        width, nodes = int(row[0]), bytes(row[1])
        if len(nodes) != row_offsets(width)[-1] + (width >> (ROWS - 1)) * HASH:
            raise LedgerError(f"stored tile {level}/{index} of log `{self.origin}` is malformed")
        return Tile(index, width, nodes)

    # -- appending ------------------------------------------------------------------

    def refresh(self) -> None:
        """Catch up with entries another process integrated into the same store."""
        with self._write_lock, self.db.transaction(write=False) as tx:
            stored = self._stored_size(tx)
            if stored != self._state.size:
                self._state = self._load(tx, stored)

    @property
    def size(self) -> int:
        """The integrated (durable) tree size."""
        return self._state.size

    def append(self, entries: Sequence[bytes]) -> int:
        """Integrate entries durably in one transaction; return the index of the first."""
        for entry in entries:
            if len(entry) > MAX_ENTRY_SIZE:
                raise PayloadTooLarge(f"ledger entry of {len(entry)} bytes is over the limit")
        with self._write_lock, self.db.transaction() as tx:
            state = self._state
            if self._stored_size(tx, lock=True) != state.size:
                # Someone else integrated (a second sequencer on PostgreSQL): start from disk.
                state = self._load(tx, self._stored_size(tx))
            compact = state.compact.copy()
            leaves = [leaf_hash(e) for e in entries]
            tiles = grow_tiles(state.edge_tiles, compact.extend_runs(leaves))
            bundle_rows, edge_bundle = self._grow_bundles(state, entries)
            tx.executemany(
                "INSERT INTO ledger_tiles (level, idx, width, nodes) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (level, idx) DO UPDATE SET width = excluded.width,"
                " nodes = excluded.nodes",
                [(level, t.index, t.width, t.nodes) for (level, _), t in tiles.items()],
            )
            tx.executemany(
                "INSERT INTO ledger_bundles (idx, width, data) VALUES (?, ?, ?)"
                " ON CONFLICT (idx) DO UPDATE SET width = excluded.width, data = excluded.data",
                bundle_rows,
            )
            tx.execute("UPDATE ledger_state SET size = ? WHERE id = 1", (compact.size,))
            edge = dict(state.edge_tiles)
            for (level, _), tile in sorted(tiles.items()):
                edge[level] = tile
        # Committed: publish the new snapshot (one reference assignment).
        self._state = _State(compact.size, compact, edge, edge_bundle)
        return state.size

    @staticmethod
    def _grow_bundles(
        state: _State, entries: Sequence[bytes]
    ) -> tuple[list[tuple[int, int, bytes]], tuple[int, tuple[bytes, ...], bytes]]:
        """Bundle rows to write, and the new rightmost bundle (entries and encoding)."""
        if not entries:
            return [], state.edge_bundle
        index, current, encoded = state.edge_bundle
        if len(current) == TILE_WIDTH:
            index, current, encoded = index + 1, (), b""
        rows: list[tuple[int, int, bytes]] = []
        edge = state.edge_bundle
        at = 0
        while at < len(entries):
            take = entries[at : at + TILE_WIDTH - len(current)]
            at += len(take)
            # Only the new entries are encoded; the bundle so far is kept encoded.
            current, encoded = (*current, *take), encoded + encode_bundle(take)
            rows.append((index, len(current), encoded))
            edge = (index, current, encoded)
            if len(current) == TILE_WIDTH:
                index, current, encoded = index + 1, (), b""
        return rows, edge

    # -- reading --------------------------------------------------------------------

    def _tile(self, state: _State, level: int, index: int) -> Tile:
        edge = state.edge_tiles.get(level)
        if edge is not None and edge.index == index:
            return edge
        # Lock-free hit: a dict read is atomic, and full tiles never change. Eviction
        # is first-in first-out, which spares every hit the bookkeeping of an LRU.
        tile = self._cache.get((level, index))
        if tile is not None:
            return tile
        with self.db.transaction(write=False) as tx:
            tile = self._read_tile(tx, level, index)
        if tile is None:
            raise EntryNotFound(f"no tile {level}/{index} in log `{self.origin}`")
        if tile.width == TILE_WIDTH:  # full tiles never change: safe to keep
            with self._cache_lock:
                self._cache[(level, index)] = tile
                if len(self._cache) > self._cache_size:
                    del self._cache[next(iter(self._cache))]
        return tile

    def _node(self, state: _State, level: int, index: int) -> bytes:
        tile_level, k = divmod(level, TILE_HEIGHT)
        shift = TILE_HEIGHT - k
        tile = self._tile(state, tile_level, index >> shift)
        position = index - ((index >> shift) << shift)
        if position >= tile.width >> k:
            raise EntryNotFound(f"node {level}/{index} is not complete in log `{self.origin}`")
        at = row_offsets(tile.width)[k] + position * HASH
        return tile.nodes[at : at + HASH]

    def node(self, level: int, index: int) -> bytes:
        """Hash of the perfect subtree (level, index), if integrated."""
        return self._node(self._state, level, index)

    def _check_size(self, size: int) -> None:
        if size > self._state.size:
            self.refresh()
        if not 0 < size <= self._state.size:
            raise EntryNotFound(f"log `{self.origin}` has no tree of size `{size}`")

    def root(self, size: int | None = None) -> bytes:
        """Root hash of the tree of `size` leaves (default: the integrated size)."""
        state = self._state
        if size is None or size == state.size:
            return state.compact.root()
        self._check_size(size)
        return root_hash(size, lambda lv, ix: self._node(state, lv, ix))

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """RFC 9162 §2.1.3 inclusion proof of entry `index` in the tree of `size`."""
        self._check_size(size)
        state = self._state
        return inclusion_proof(index, size, lambda lv, ix: self._node(state, lv, ix))

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        """RFC 9162 §2.1.4 consistency proof between two tree sizes."""
        self._check_size(size2)
        state = self._state
        return consistency_proof(size1, size2, lambda lv, ix: self._node(state, lv, ix))

    def bundle(self, index: int) -> list[bytes]:
        """The entries of bundle `index` integrated so far."""
        state = self._state
        if state.edge_bundle[0] == index and state.edge_bundle[1]:
            return list(state.edge_bundle[1])
        width, data = self._stored_bundle(state, index)
        return decode_bundle(data, width)

    def bundle_data(self, index: int, width: int) -> bytes:
        """Bundle `index` cut to its first `width` entries, in the C2SP encoding: what is
        stored, not decoded and encoded again (a monitor reads every bundle)."""
        state = self._state
        if state.edge_bundle[0] == index and state.edge_bundle[1]:
            stored, data = len(state.edge_bundle[1]), state.edge_bundle[2]
        else:
            stored, data = self._stored_bundle(state, index)
        if not 0 < width <= stored:
            raise EntryNotFound(f"entry bundle {index} holds only {stored} entries")
        return data if width == stored else bundle_prefix(data, width)

    def _stored_bundle(self, state: _State, index: int) -> tuple[int, bytes]:
        with self.db.transaction(write=False) as tx:
            row = tx.execute(
                "SELECT width, data FROM ledger_bundles WHERE idx = ?", (index,)
            ).fetchone()
        if row is None or index > (state.size - 1) >> TILE_HEIGHT:
            raise EntryNotFound(f"no entry bundle {index} in log `{self.origin}`")
        return int(row[0]), bytes(row[1])

    def entry(self, index: int) -> bytes:
        """One entry by index."""
        if not 0 <= index < self._state.size:
            raise EntryNotFound(f"no entry `{index}` in log `{self.origin}`")
        return self.bundle(index >> TILE_HEIGHT)[index % TILE_WIDTH]

    def index_leaves(self, limit: int = 100_000) -> int:
        """Extend the leaf-hash index by up to `limit` entries; return how far it reaches.

        Kept off the append path: a random-keyed index costs appends a random page
        write per entry. The checkpointer calls this between checkpoints, and a
        lookup by leaf hash catches it up first. The leaf hashes are the bottom rows
        of the stored level-0 tiles: one INSERT … SELECT cuts each entry's 8-byte
        prefix out of them in the database, and nothing is decoded or hashed again.
        A lookup confirms each candidate against the entry itself.
        """
        with self._index_lock:
            (row,) = self.db.query("SELECT indexed FROM ledger_leaf_progress WHERE id = 1")
            start = int(row[0])
            end = min(self._state.size, start + limit)
            if end <= start:
                return start
            span = (start >> TILE_HEIGHT, (end - 1) >> TILE_HEIGHT)
            with self.db.transaction() as tx:
                widths = tx.execute(
                    "SELECT idx, width FROM ledger_tiles WHERE level = 0 AND idx >= ? AND idx <= ?",
                    span,
                ).fetchall()
                covered = 0  # entries of [start, end) the stored tiles hold
                for tile, width in widths:
                    base = int(tile) << TILE_HEIGHT
                    covered += max(0, min(end, base + int(width)) - max(start, base))
                if covered != end - start:
                    raise LedgerError(
                        f"log `{self.origin}` lacks level-0 tiles for entries {start}..{end - 1}"
                    )
                tx.execute(_INDEX_LEAVES[self.db.dialect], (*span, start, end))
                tx.execute("UPDATE ledger_leaf_progress SET indexed = ? WHERE id = 1", (end,))
            return end

    def index_of(self, leaf: bytes) -> int:
        """The first index whose entry has this leaf hash (RFC 6962 get-proof-by-hash)."""
        while self.index_leaves() < self._state.size:
            pass
        with self.db.transaction(write=False) as tx:
            rows = tx.execute(
                "SELECT idx FROM ledger_leaves WHERE prefix = ? ORDER BY idx", (_prefix(leaf),)
            ).fetchall()
        size = self._state.size
        for (index,) in rows:
            if int(index) < size and hmac.compare_digest(leaf_hash(self.entry(int(index))), leaf):
                return int(index)
        raise EntryNotFound(f"no entry with leaf hash `{leaf.hex()}` in log `{self.origin}`")

    def tile(self, level: int, index: int, width: int) -> bytes:
        """The C2SP hash tile (level, index) cut to `width` hashes."""
        state = self._state
        tile = self._tile(state, level, index)
        available = min(tile.width, _tree_width(state.size, level, index))
        if width > available:
            raise EntryNotFound(f"tile {level}/{index} has only {available} hashes")
        return tile.nodes[: width * HASH]

    # -- checkpoints ----------------------------------------------------------------

    def latest_checkpoint(self) -> SignedCheckpoint | None:
        """The most recent checkpoint this log signed."""
        with self.db.transaction(write=False) as tx:
            row = tx.execute(
                "SELECT size, root, note FROM ledger_checkpoints ORDER BY size DESC LIMIT 1"
            ).fetchone()
        return None if row is None else SignedCheckpoint(int(row[0]), bytes(row[1]), str(row[2]))

    def checkpoints(self) -> list[SignedCheckpoint]:
        """Every checkpoint this log signed, oldest first."""
        with self.db.transaction(write=False) as tx:
            rows = tx.execute(
                "SELECT size, root, note FROM ledger_checkpoints ORDER BY size"
            ).fetchall()
        return [SignedCheckpoint(int(r[0]), bytes(r[1]), str(r[2])) for r in rows]

    def _verify_stored_tree(self, latest: SignedCheckpoint) -> None:
        state = self._state
        if latest.size > state.size:
            raise LedgerError(
                f"log `{self.origin}` holds {state.size} entries but signed a checkpoint"
                f" for {latest.size}: the store was rolled back"
            )
        if latest.size and not hmac.compare_digest(self.root(latest.size), latest.root):
            raise LedgerError(
                f"log `{self.origin}` no longer reproduces its checkpoint at size {latest.size}"
            )

    def sign_checkpoint(self) -> SignedCheckpoint:
        """Sign a checkpoint for the integrated size (or return the latest if no growth)."""
        with self._sign_lock:
            latest = self.latest_checkpoint()  # before the size: see `_open`
            self.refresh()
            state = self._state
            if latest is not None:
                if latest.size == state.size:
                    return latest
                self._verify_stored_tree(latest)
            root = state.compact.root()
            note = sign_checkpoint(Checkpoint(self.origin, state.size, root), [self.signer])
            with self.db.transaction() as tx:
                # Another process on the same store (a second gateway on PostgreSQL) may
                # sign this size at the same moment: the first insert stands, and ours
                # must have the same root.
                tx.execute(
                    "INSERT INTO ledger_checkpoints (size, root, note, signed_at)"
                    " VALUES (?, ?, ?, ?) ON CONFLICT (size) DO NOTHING",
                    (state.size, root, note, _now()),
                )
                stored = tx.execute(
                    "SELECT root, note FROM ledger_checkpoints WHERE size = ?", (state.size,)
                ).fetchone()
            if not hmac.compare_digest(bytes(stored[0]), root):
                raise LedgerError(
                    f"log `{self.origin}` refused to sign a second root for size {state.size}"
                )
            return SignedCheckpoint(state.size, root, str(stored[1]))

    def add_cosignature(self, size: int, witness: str, line: str) -> None:
        """Keep a witness's verified cosignature line for the checkpoint at `size`."""
        with self.db.transaction() as tx:
            tx.execute(
                "INSERT INTO ledger_cosignatures (size, witness, line) VALUES (?, ?, ?)"
                " ON CONFLICT (size, witness) DO NOTHING",
                (size, witness, line),
            )

    def has_cosignature(self, size: int, witness: str) -> bool:
        """True if `witness` cosigned the checkpoint at `size`."""
        return bool(
            self.db.query(
                "SELECT 1 FROM ledger_cosignatures WHERE size = ? AND witness = ?", (size, witness)
            )
        )

    def last_cosigned_size(self, witness: str) -> int:
        """The largest size `witness` cosigned (0 if none)."""
        (row,) = self.db.query(
            "SELECT COALESCE(MAX(size), 0) FROM ledger_cosignatures WHERE witness = ?", (witness,)
        )
        return int(row[0])

    def cosigned_note(self, signed: SignedCheckpoint) -> str:
        """The checkpoint note with every kept cosignature line appended."""
        rows = self.db.query(
            "SELECT line FROM ledger_cosignatures WHERE size = ? ORDER BY witness", (signed.size,)
        )
        return signed.note + "".join(str(r[0]) + "\n" for r in rows)

    def checkpoint_of(self, note: str) -> Checkpoint:
        """Parse the checkpoint body of a signed note (no signature check)."""
        return parse_checkpoint(parse_note(note).text)


def grow_tiles(edge_tiles: dict[int, Tile], runs: Sequence[Run]) -> dict[tuple[int, int], Tile]:
    """The tiles that newly completed subtrees change (`CompactRange.extend_runs`, item L
    for Merkle level L), grown from the rightmost ones."""
    rows_by_tile: dict[tuple[int, int], list[list[bytes]]] = {}
    for merkle_level, (start, hashes) in enumerate(runs):
        level, k = divmod(merkle_level, TILE_HEIGHT)
        shift = TILE_HEIGHT - k  # row k of a tile holds 2**shift subtrees
        at, index = 0, start
        while at < len(hashes):
            tile_index = index >> shift
            take = min(len(hashes) - at, ((tile_index + 1) << shift) - index)
            rows = rows_by_tile.get((level, tile_index))
            if rows is None:
                edge = edge_tiles.get(level)
                rows = (
                    edge.rows() if edge and edge.index == tile_index else [[] for _ in range(ROWS)]
                )
                rows_by_tile[(level, tile_index)] = rows
            rows[k].extend(hashes[at : at + take])
            at += take
            index += take
    return {
        key: Tile(
            key[1],
            len(rows[0]),
            b"".join(b"".join(r) for r in rows),
            tuple(tuple(r) for r in rows),
        )
        for key, rows in rows_by_tile.items()
    }


def _prefix(leaf: bytes) -> bytes:
    return leaf[:8]


# Each entry of the level-0 tiles in [first tile, last tile] with start <= index < end, as
# (first 8 bytes of its leaf hash, index): the tile's bottom row holds the leaf hashes.
_INDEX_LEAVES = {
    "sqlite": (
        "WITH RECURSIVE n(i) AS"
        f" (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {TILE_WIDTH - 1})"
        " INSERT INTO ledger_leaves (prefix, idx)"
        f" SELECT substr(t.nodes, n.i * {HASH} + 1, 8), t.idx * {TILE_WIDTH} + n.i"
        " FROM ledger_tiles AS t JOIN n ON n.i < t.width"
        " WHERE t.level = 0 AND t.idx >= ? AND t.idx <= ?"
        f" AND t.idx * {TILE_WIDTH} + n.i >= ? AND t.idx * {TILE_WIDTH} + n.i < ?"
        " ON CONFLICT (prefix, idx) DO NOTHING"
    ),
    "postgres": (
        "INSERT INTO ledger_leaves (prefix, idx)"
        f" SELECT substring(t.nodes FROM n.i * {HASH} + 1 FOR 8), t.idx * {TILE_WIDTH} + n.i"
        f" FROM ledger_tiles AS t CROSS JOIN generate_series(0, {TILE_WIDTH - 1}) AS n(i)"
        " WHERE t.level = 0 AND n.i < t.width AND t.idx >= ? AND t.idx <= ?"
        f" AND t.idx * {TILE_WIDTH} + n.i >= ? AND t.idx * {TILE_WIDTH} + n.i < ?"
        " ON CONFLICT (prefix, idx) DO NOTHING"
    ),
}


def _tree_width(size: int, level: int, index: int) -> int:
    """How many hashes tile (level, index) holds in a tree of `size` (C2SP tlog-tiles)."""
    nodes_at_level = size >> (TILE_HEIGHT * level)
    return max(0, min(TILE_WIDTH, nodes_at_level - index * TILE_WIDTH))
