"""The record step: events reach the region's ledger before an answer leaves the gateway.

A recorder returns each event's ledger index only once it is durable; if it cannot
record, it raises RecordingFailed and the request is not served.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from domicile.errors import RecordingFailed
from domicile.gateway.request import Event
from domicile.ledger.entry import canonical_json, encode_entry
from domicile.ledger.sequencer import Sequencer


class Recorder(Protocol):
    """Makes events durable."""

    def record(self, events: Sequence[Event]) -> list[int]:
        """Record events; return their ledger indices once durable."""

    async def record_async(self, events: Sequence[Event]) -> list[int]:
        """`record` for a caller on an event loop, which it does not block."""

    def recorded(self) -> dict[tuple[str, str, str], int]:
        """Events made durable so far, by (region, kind, decision result or "")."""


_Template = tuple[tuple[bytes, ...], tuple[str, ...], frozenset[str]] | None


def _filled(event: Event, time: str, templates: dict[tuple[int, str, str], _Template]) -> bytes:
    """Encode an event whose attributes are a shared template with placeholders.

    The template is encoded once per `record` call (events share the attributes
    object) and cut at its placeholders; each placeholder string must occur exactly
    once in it, and is replaced by the canonical JSON of the event's value, which keeps
    the entry canonical (keys do not move, values are encoded as `encode_entry` would).
    Otherwise the event is encoded filled in, the slow way.
    """
    assert event.fill is not None
    key = (id(event.attributes), event.kind, event.region)
    if key not in templates:
        templates[key] = _cut(encode_entry(event.kind, event.region, time, event.attributes),
                              tuple(event.fill))  # fmt: skip
    template = templates[key]
    if template is None or event.fill.keys() != template[2]:
        return encode_entry(event.kind, event.region, time, fill_in(event))
    parts, names, _ = template
    fill = event.fill
    out = [parts[0]]
    for name, part in zip(names, parts[1:], strict=True):
        out.append(canonical_json(fill[name]))
        out.append(part)
    return b"".join(out)


def _cut(entry: bytes, placeholders: tuple[str, ...]) -> _Template:
    """The entry's bytes around its placeholders, in the order they occur, or None
    unless each placeholder occurs exactly once."""
    at: list[tuple[int, str, bytes]] = []
    for placeholder in placeholders:
        quoted = canonical_json(placeholder)
        if entry.count(quoted) != 1:
            return None
        at.append((entry.index(quoted), placeholder, quoted))
    at.sort()
    parts: list[bytes] = []
    start = 0
    for position, _, quoted in at:
        parts.append(entry[start:position])
        start = position + len(quoted)
    parts.append(entry[start:])
    names = tuple(name for _, name, _ in at)
    return tuple(parts), names, frozenset(names)


def fill_in(event: Event) -> dict[str, Any]:
    """The event's attributes with its placeholders replaced (the reference encoding)."""
    assert event.fill is not None
    fill = event.fill

    def walk(value: object) -> object:
        if isinstance(value, str) and value in fill:
            return fill[value]
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    return walk(event.attributes)  # type: ignore[return-value]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class LedgerRecorder:
    """Appends events to their region's log through that region's sequencer, and counts
    what it recorded (for the metrics)."""

    def __init__(self, sequencers: Mapping[str, Sequencer]) -> None:
        self.sequencers = sequencers
        self._counts: Counter[tuple[str, str, str]] = Counter()
        self._counts_lock = threading.Lock()

    def record(self, events: Sequence[Event]) -> list[int]:
        """Encode and append events, one group-committed batch per region."""
        by_region = self._encode(events)
        indices = [0] * len(events)
        for region, items in by_region.items():
            first = self._sequencer(region).append([entry for _, entry in items])
            for offset, (position, _) in enumerate(items):
                indices[position] = first + offset
        self._count(events)
        return indices

    async def record_async(self, events: Sequence[Event]) -> list[int]:
        """`record` for a caller on an event loop: the appends run off the loop."""
        by_region = self._encode(events)
        indices = [0] * len(events)
        for region, items in by_region.items():
            first = await self._sequencer(region).append_async([entry for _, entry in items])
            for offset, (position, _) in enumerate(items):
                indices[position] = first + offset
        self._count(events)
        return indices

    def recorded(self) -> dict[tuple[str, str, str], int]:
        """Events made durable by this process, by (region, kind, result); `result` is a
        decision's `allow` or `deny`, empty for other kinds."""
        with self._counts_lock:
            return dict(self._counts)

    def _count(self, events: Sequence[Event]) -> None:
        tally = Counter(
            (e.region, e.kind, str(e.attributes.get("result", "")) if e.kind == "decision" else "")
            for e in events
        )
        with self._counts_lock:
            self._counts.update(tally)

    def _sequencer(self, region: str) -> Sequencer:
        sequencer = self.sequencers.get(region)
        if sequencer is None:
            raise RecordingFailed(f"region `{region}` has no ledger")
        return sequencer

    @staticmethod
    def _encode(events: Sequence[Event]) -> dict[str, list[tuple[int, bytes]]]:
        """Each event's canonical entry with its position, by region."""
        time = _now()
        by_region: dict[str, list[tuple[int, bytes]]] = {}
        templates: dict[tuple[int, str, str], _Template] = {}
        for position, event in enumerate(events):
            if event.fill is None:
                entry = encode_entry(event.kind, event.region, time, event.attributes)
            else:
                entry = _filled(event, time, templates)
            by_region.setdefault(event.region, []).append((position, entry))
        return by_region
