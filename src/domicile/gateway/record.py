"""The record step: events reach the region's ledger before an answer leaves the gateway.

A recorder returns each event's ledger index only once it is durable; if it cannot
record, it raises RecordingFailed and the request is not served.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Protocol

from domicile.errors import RecordingFailed
from domicile.gateway.request import Event
from domicile.ledger.entry import encode_entry
from domicile.ledger.sequencer import Sequencer


class Recorder(Protocol):
    """Makes events durable."""

    def record(self, events: Sequence[Event]) -> list[int]:
        """Record events; return their ledger indices once durable."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class LedgerRecorder:
    """Appends events to their region's log through that region's sequencer."""

    def __init__(self, sequencers: Mapping[str, Sequencer]) -> None:
        self.sequencers = sequencers

    def record(self, events: Sequence[Event]) -> list[int]:
        """Encode and append events, one group-committed batch per region."""
        time = _now()
        by_region: dict[str, list[tuple[int, bytes]]] = {}
        for position, event in enumerate(events):
            entry = encode_entry(event.kind, event.region, time, event.attributes)
            by_region.setdefault(event.region, []).append((position, entry))
        indices = [0] * len(events)
        for region, items in by_region.items():
            sequencer = self.sequencers.get(region)
            if sequencer is None:
                raise RecordingFailed(f"region `{region}` has no ledger")
            first = sequencer.append([entry for _, entry in items])
            for offset, (position, _) in enumerate(items):
                indices[position] = first + offset
        return indices
