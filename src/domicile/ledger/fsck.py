"""Full verification of a stored region log: every entry re-hashed, every tile and every
signed checkpoint recomputed. Detects edited, deleted, inserted or reordered entries
and altered hashes, whatever the store's own bookkeeping says.
"""

from __future__ import annotations

import bisect
import hmac
from dataclasses import dataclass

from domicile.errors import LedgerError
from domicile.ledger.checkpoint import open_checkpoint
from domicile.ledger.log import RegionLog, Tile, grow_tiles
from domicile.ledger.merkle import CompactRange, leaf_hash
from domicile.ledger.tiles import TILE_WIDTH, decode_bundle


@dataclass(frozen=True)
class FsckReport:
    """What a successful check covered."""

    entries: int
    tiles: int
    checkpoints: int
    root: bytes


def _stored_rows(
    log: RegionLog,
) -> tuple[list[tuple[int, int, bytes]], dict[tuple[int, int], tuple[int, bytes]], int]:
    with log.db.transaction(write=False) as tx:
        bundles = [
            (int(r[0]), int(r[1]), bytes(r[2]))
            for r in tx.execute(
                "SELECT idx, width, data FROM ledger_bundles ORDER BY idx"
            ).fetchall()
        ]
        tiles = {
            (int(r[0]), int(r[1])): (int(r[2]), bytes(r[3]))
            for r in tx.execute("SELECT level, idx, width, nodes FROM ledger_tiles").fetchall()
        }
        size = int(tx.execute("SELECT size FROM ledger_state WHERE id = 1").fetchone()[0])
    return bundles, tiles, size


def verify_log(log: RegionLog) -> FsckReport:
    """Recompute the whole log from its entries; raise LedgerError at the first mismatch."""
    bundles, stored_tiles, size = _stored_rows(log)
    checkpoints = {cp.size: cp for cp in log.checkpoints()}
    verifier = log.signer.verifier()
    compact = CompactRange()
    rebuilt: dict[tuple[int, int], bytes] = {}
    edge: dict[int, Tile] = {}
    roots: dict[int, bytes] = {0: compact.root()}
    sizes = sorted(checkpoints)
    for position, (index, width, data) in enumerate(bundles):
        if index != position:
            raise LedgerError(f"entry bundle {position} is missing (found {index} in its place)")
        entries = decode_bundle(data, width)
        if width != TILE_WIDTH and position != len(bundles) - 1:
            raise LedgerError(f"entry bundle {index} is partial but not the last")
        leaves = [leaf_hash(entry) for entry in entries]
        # The bundle a segment at a time, cut where a checkpoint needs its root.
        at = compact.size
        cuts = sizes[bisect.bisect_right(sizes, at) : bisect.bisect_left(sizes, at + len(leaves))]
        for end in [*cuts, at + len(leaves)]:
            runs = compact.extend_runs(leaves[compact.size - at : end - at])
            if compact.size in checkpoints:
                roots[compact.size] = compact.root()
            for key, tile in sorted(grow_tiles(edge, runs).items()):
                rebuilt[key] = tile.nodes
                edge[key[0]] = tile
    if compact.size != size:
        raise LedgerError(f"log holds {compact.size} entries but records its size as {size}")
    for key, blob in rebuilt.items():
        stored = stored_tiles.get(key)
        if stored is None or not hmac.compare_digest(stored[1], blob):
            raise LedgerError(f"stored tile {key[0]}/{key[1]} does not match the entries")
    if set(stored_tiles) - set(rebuilt):
        raise LedgerError("log stores tiles that no entry accounts for")
    for cp_size, cp in checkpoints.items():
        checkpoint, _ = open_checkpoint(cp.note, [verifier])
        recomputed = roots.get(cp_size)
        if recomputed is None or not hmac.compare_digest(recomputed, checkpoint.root_hash):
            raise LedgerError(f"signed checkpoint at size {cp_size} does not match the entries")
        if checkpoint.size != cp_size or checkpoint.origin != log.origin:
            raise LedgerError(f"signed checkpoint at size {cp_size} is filed wrongly")
    return FsckReport(compact.size, len(rebuilt), len(checkpoints), compact.root())
