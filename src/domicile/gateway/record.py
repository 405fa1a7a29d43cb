"""The record step: every event of a region goes to its ledger before the answer leaves.

The region ledger arrives with its own issue; until then `UnrecordedEvents` keeps the
seam and counts what would have been written, so wiring it later changes no caller.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from typing import Protocol

from domicile.gateway.request import Event


class Recorder(Protocol):
    """Makes events durable; raises RecordingFailed when it cannot."""

    def record(self, events: Sequence[Event]) -> None:
        """Record events; return only once they are durable."""


class UnrecordedEvents:
    """A recorder that only counts events by kind (no ledger is configured yet)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def record(self, events: Sequence[Event]) -> None:
        """Count the events."""
        with self._lock:
            self.counts.update(e.kind for e in events)
