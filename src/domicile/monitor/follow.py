"""Following one region log: checkpoint, consistency, entries, recomputed root.

Each round fetches the latest checkpoint, verifies its signature with the configured
key, records it (a second root for a size already seen is a split view), proves it
consistent with every checkpoint seen before (RFC 9162 proofs from the gateway, checked
here against the stored roots), then fetches the new entries as C2SP entry bundles,
re-hashes them into the stored compact range and compares the root with the signed
one. Only then are the entries analysed and the new state committed.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from domicile.errors import CryptoError, EntryNotFound, LedgerError
from domicile.ledger.checkpoint import Checkpoint, open_checkpoint
from domicile.ledger.entry import decode_entry
from domicile.ledger.merkle import CompactRange, leaf_hash, verify_consistency
from domicile.ledger.note import Ed25519Verifier
from domicile.ledger.tiles import TILE_WIDTH
from domicile.monitor.alerts import Alert
from domicile.monitor.client import LogClient
from domicile.monitor.state import MonitorState, SeenCheckpoint, Verified

CHUNK = 16 * TILE_WIDTH
"""Entries analysed and stored per step: the monitor's memory stays flat whatever the log size."""

PREFETCH = 8
"""Entry bundles requested ahead of the one being re-hashed (from a small thread pool)."""


@dataclass
class Fetched:
    """Entries fetched and re-hashed for one round."""

    entries: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
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
            for chunk in stream:
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
    """Iterate decoded entries of a log range in chunks; `frontier` re-hashes them.

    Bundles are fetched a few ahead on worker threads, so waiting on the gateway
    overlaps with decoding and analysis. A missing bundle, or an entry that does not
    decode, raises :class:`FetchProblem`; a gateway that does not answer raises
    :class:`Unavailable`. After the last chunk,
    `frontier` holds the compact range of the whole tree, to compare with the signed root.
    """

    def __init__(self, follower: Follower, start: CompactRange, size: int, chunk: int) -> None:
        """Stream [start.size, size) of `follower`'s log."""
        self.follower = follower
        self.frontier = start.copy()
        self.start = start.size
        self.size = size
        self.chunk = max(1, chunk)

    def _bundle(self, bundle: int) -> list[bytes]:
        width = min(TILE_WIDTH, self.size - bundle * TILE_WIDTH)
        try:
            return self.follower.client.bundle(self.follower.region, bundle, width)
        except EntryNotFound:
            raise FetchProblem(f"entry bundle {bundle} (width {width}) is missing") from None
        except LedgerError as exc:  # unreachable, timed out, 5xx: not evidence of anything
            raise Unavailable(f"entry bundle {bundle} cannot be read now: {exc}") from None

    def __iter__(self) -> Iterator[list[tuple[int, dict[str, Any]]]]:
        """Yield lists of (index, entry), oldest first."""
        bundles = range(self.start // TILE_WIDTH, (self.size + TILE_WIDTH - 1) // TILE_WIDTH)
        out: list[tuple[int, dict[str, Any]]] = []
        with ThreadPoolExecutor(max_workers=4, thread_name_prefix="monitor-fetch") as pool:
            ahead: deque[tuple[int, Future[list[bytes]]]] = deque()
            todo = iter(bundles)
            for bundle in itertools.islice(todo, PREFETCH):
                ahead.append((bundle, pool.submit(self._bundle, bundle)))
            while ahead:
                bundle, future = ahead.popleft()
                try:
                    raw = future.result()
                except (FetchProblem, Unavailable):
                    for _, other in ahead:
                        other.cancel()
                    raise
                for nxt in itertools.islice(todo, 1):
                    ahead.append((nxt, pool.submit(self._bundle, nxt)))
                base = bundle * TILE_WIDTH
                skip = max(0, self.start - base)
                fresh = raw[skip:]
                self.frontier.extend([leaf_hash(data) for data in fresh], record=False)
                for offset, data in enumerate(fresh, base + skip):
                    try:
                        out.append((offset, decode_entry(data)))
                    except LedgerError as exc:
                        raise FetchProblem(f"entry {offset} does not decode: {exc}") from None
                if len(out) >= self.chunk:
                    yield out
                    out = []
        if out:
            yield out
