"""Following one region log: checkpoint, consistency, entries, recomputed root.

Each round fetches the latest checkpoint, verifies its signature with the configured
key, records it (a second root for a size already seen is a split view), proves it
consistent with every checkpoint seen before (RFC 9162 proofs from the gateway, checked
here against the stored roots), then fetches the new entries as C2SP entry bundles,
re-hashes them into the stored compact range and compares the root with the signed
one. Only then are the entries analysed and the new state committed.

Entries leave the stream as the bytes that were hashed; the analyser decodes them
(analyze.py, shapes.py), so one copy of each entry is all the monitor holds.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from domicile.errors import CryptoError, EntryNotFound, LedgerError
from domicile.ledger.checkpoint import Checkpoint, open_checkpoint
from domicile.ledger.merkle import CompactRange, node_hash, verify_consistency
from domicile.ledger.note import Ed25519Verifier
from domicile.ledger.tiles import TILE_WIDTH
from domicile.monitor.alerts import Alert
from domicile.monitor.client import LogClient, MalformedBundle
from domicile.monitor.state import MonitorState, SeenCheckpoint, Verified

CHUNK = 16 * TILE_WIDTH
"""Entries analysed and stored per step: the monitor's memory stays flat whatever the log size."""

_BUNDLE_LEVEL = TILE_WIDTH.bit_length() - 1
"""A full entry bundle is a perfect subtree of this height (TILE_WIDTH is a power of two)."""


@dataclass
class Fetched:
    """Entries fetched and re-hashed for one round (as served: undecoded bytes)."""

    entries: list[bytes] = field(default_factory=list)
    frontier: CompactRange | None = None


def region_of(origin: str) -> str:
    """The region a log origin names (its last path element)."""
    return origin.rsplit("/", 1)[-1]


def split_view_alert(origin: str, new: Checkpoint, note: str, old: SeenCheckpoint) -> Alert:
    """Two different roots for one size: both signed checkpoints are the evidence."""
    return Alert(
        "split-view",
        origin,
        f"two different roots for size {new.size}",
        key=f"{new.size}|{min(new.root_hash, old.root)!r}|{max(new.root_hash, old.root)!r}",
        evidence={"checkpoints": [old.note, note], "sources": [old.source]},
    )


class Follower:
    """Follows one log for one monitor."""

    def __init__(self, state: MonitorState, client: LogClient, verifier: Ed25519Verifier) -> None:
        """Follow the log whose key is `verifier` (its name is the origin)."""
        self.state = state
        self.client = client
        self.verifier = verifier
        self.origin = verifier.name
        self.region = region_of(self.origin)

    def latest(self) -> tuple[Checkpoint, str] | Alert:
        """Fetch and verify the latest checkpoint, or the alert it deserves."""
        note = self.client.checkpoint(self.region)
        try:
            checkpoint, _ = open_checkpoint(note, [self.verifier])
        except (LedgerError, CryptoError) as exc:
            return Alert(
                "bad-checkpoint", self.origin, f"checkpoint does not verify: {exc}",
                key=note, evidence={"checkpoint": note},
            )  # fmt: skip
        if checkpoint.origin != self.origin:
            return Alert(
                "bad-checkpoint", self.origin, f"checkpoint names origin `{checkpoint.origin}`",
                key=note, evidence={"checkpoint": note},
            )  # fmt: skip
        return checkpoint, note

    def check_history(
        self, checkpoint: Checkpoint, note: str, verified: Verified | None
    ) -> list[Alert]:
        """Alerts for a checkpoint that does not extend what was seen before."""
        alerts = [
            split_view_alert(self.origin, checkpoint, note, old)
            for old in self.state.add_checkpoint(
                self.origin, checkpoint.size, checkpoint.root_hash, note, "gateway"
            )
        ]
        if verified is not None and checkpoint.size < verified.size:
            alerts.append(
                Alert(
                    "log-truncated",
                    self.origin,
                    f"the log shows {checkpoint.size} entries after signing {verified.size}",
                    key=f"{checkpoint.size}|{checkpoint.root_hash!r}",
                    evidence={"checkpoints": [verified.note, note]},
                )
            )
            return alerts
        for old in self.state.unchecked_checkpoints(self.origin, checkpoint.size):
            alert = self._consistent(old, checkpoint, note)
            if alert is not None:
                alerts.append(alert)
        return alerts

    def _consistent(self, old: SeenCheckpoint, new: Checkpoint, note: str) -> Alert | None:
        try:
            proof = self.client.consistency(self.region, old.size, new.size)
            verify_consistency(old.size, new.size, proof, old.root, new.root_hash)
        except (LedgerError, KeyError, ValueError) as exc:
            return Alert(
                "log-forked", self.origin,
                f"checkpoint {new.size} is not consistent with checkpoint {old.size}: {exc}",
                key=f"{old.size}|{old.root!r}|{new.size}|{new.root_hash!r}",
                evidence={"checkpoints": [old.note, note]},
            )  # fmt: skip
        self.state.mark_consistent(self.origin, old.size, old.root)
        return None

    def fetch(self, start: CompactRange, size: int) -> Fetched | str:
        """Fetch entries [start.size, size), re-hash them; a string says what went wrong."""
        out = Fetched()
        stream = self.stream(start, size)
        try:
            for _, chunk in stream:
                out.entries += chunk
        except (FetchProblem, Unavailable) as exc:
            return str(exc)
        out.frontier = stream.frontier
        return out

    def stream(self, start: CompactRange, size: int, chunk: int = CHUNK) -> EntryStream:
        """Entries [start.size, size) in chunks of about `chunk`, re-hashed as they come."""
        return EntryStream(self, start, size, chunk)


class FetchProblem(LedgerError):
    """The entries served are missing or do not decode (the message says which)."""


class Unavailable(LedgerError):
    """The gateway did not answer for now (network, timeout, server error): try later."""


class EntryStream:
    """Iterate the entries of a log range in chunks; `frontier` re-hashes them.

    Bundles are requested a few ahead (`LogClient.bundles`), so the gateway works on
    the next ones while this one is re-hashed and analysed. A missing bundle raises
    :class:`FetchProblem`; a gateway that does not answer raises :class:`Unavailable`.
    After the last chunk, `frontier` holds the compact range of the whole tree, to
    compare with the signed root.
    """

    def __init__(self, follower: Follower, start: CompactRange, size: int, chunk: int) -> None:
        """Stream [start.size, size) of `follower`'s log."""
        self.follower = follower
        self.frontier = start.copy()
        self.start = start.size
        self.size = size
        self.chunk = max(1, chunk)

    def _width(self, bundle: int) -> int:
        return min(TILE_WIDTH, self.size - bundle * TILE_WIDTH)

    def _bundles(self) -> Iterator[tuple[int, list[bytes]]]:
        """(index, entries) of each bundle of the range, the errors as this class says."""
        bundles = range(self.start // TILE_WIDTH, (self.size + TILE_WIDTH - 1) // TILE_WIDTH)
        fetched = self.follower.client.bundles(
            self.follower.region, [(bundle, self._width(bundle)) for bundle in bundles]
        )
        with contextlib.closing(fetched):
            for bundle in bundles:
                try:
                    raw = next(fetched)
                except EntryNotFound:
                    width = self._width(bundle)
                    raise FetchProblem(
                        f"entry bundle {bundle} (width {width}) is missing"
                    ) from None
                except MalformedBundle as exc:  # served, and wrong: evidence
                    raise FetchProblem(f"entry bundle {bundle} does not decode: {exc}") from None
                except LedgerError as exc:  # unreachable, timed out, 5xx: no evidence
                    raise Unavailable(f"entry bundle {bundle} cannot be read now: {exc}") from None
                yield bundle, raw

    def __iter__(self) -> Iterator[tuple[int, list[bytes]]]:
        """Yield (index of the first, entries as served), oldest first."""
        out: list[bytes] = []
        first = self.start
        for bundle, raw in self._bundles():
            fresh = raw[max(0, self.start - bundle * TILE_WIDTH) :]
            self.frontier = rehash(self.frontier, fresh)
            out += fresh
            if len(out) >= self.chunk:
                yield first, out
                first += len(out)
                out = []
        if out:
            yield first, out


def rehash(frontier: CompactRange, entries: list[bytes]) -> CompactRange:
    """`frontier` extended by the leaf hashes of `entries` (RFC 9162 §2.1.1).

    A full bundle that starts on a bundle boundary is a perfect subtree: its root is
    folded level by level and joins the frontier as one node, which costs one hash call
    per node and no per-leaf bookkeeping. Anything else goes leaf by leaf. The hashes
    are `leaf_hash` and `node_hash`, spelt out: a call apiece is a good part of the cost.
    """
    sha256 = hashlib.sha256
    leaves = [sha256(b"\x00" + data).digest() for data in entries]
    size = frontier.size
    if len(leaves) != TILE_WIDTH or size % TILE_WIDTH:
        frontier.extend(leaves, record=False)
        return frontier
    level = leaves
    while len(level) > 1:
        level = [
            sha256(b"\x01" + left + right).digest()
            for left, right in zip(level[::2], level[1::2], strict=True)
        ]
    hashes = [node.hash for node in frontier.nodes]
    subtree = level[0]
    bits = size >> _BUNDLE_LEVEL
    while bits & 1:  # each trailing one bit is a subtree of the same height to merge with
        subtree = node_hash(hashes.pop(), subtree)
        bits >>= 1
    hashes.append(subtree)
    return CompactRange(size + TILE_WIDTH, hashes)
