"""Decision entries decoded once per shape: the same bytes apart from three string values.

A gateway logs the same kind of request over and over: decisions whose bytes differ only
in the decision id, the subject reference and the time. Their *shape* is the entry with
those three values cut out, and every entry of one shape decodes to the same value apart
from them, so the monitor decodes and checks a shape once and each entry of it in a few
lookups (analyze.py says which checks still run per entry, and falls back on the full
decoder for anything that could raise an alert).

Why an entry of a known shape is decoded exactly, without parsing it again:

* An entry is split at the first ``"decision_id":"``, the last ``"subject_ref":"`` and the
  last ``"time":"``, each value running to the next ``"``; the split is a partition of
  its bytes, so the entry *is* its shape's pieces with its three values between them.
* A shape is learnt from an entry that the full decoder accepted (canonical JSON), and
  only if a *probe* (its pieces with three marker values between them) decodes with the
  markers at exactly ``decision_id``, ``input.resource.subject_ref`` and ``time``, where
  the real entry has other values: the three cuts are those three string values, and
  nothing else.
* An entry's values must be printable ASCII without ``"`` or ``\\``: inside a JSON
  string such text stands for itself, so the entry is canonical JSON too (keys, order
  and every other token are the shape's), and decodes to the shape's value with its own
  three strings.

A known shape is found without copying or hashing its pieces. The shape matched last
is tried first, by its pattern: its pieces escaped, with a run of printable ASCII but
``"`` and ``\\`` between each two, so an entry it fully matches is exactly the pieces and
three plain values. Otherwise the cuts are found as above, the lengths of the four
pieces name a few candidate shapes, and a candidate matches if each of its pieces is
at its place (`startswith` at the cut, the lengths being equal), the values are plain
and hold no ``"`` (each runs to the next one): the same conclusion.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from domicile.ledger.entry import Json
from domicile.monitor.facts import fact_row

ShapeKey = tuple[bytes, bytes, bytes, bytes]

_DECISION_ID = b'"decision_id":"'
_SUBJECT_REF = b'"subject_ref":"'
_TIME = b'"time":"'
_PROBES = (b"@0", b"@1", b"@2")
_PLAIN = bytes(range(0x20, 0x7F)).replace(b'"', b"").replace(b"\\", b"")
"""Bytes a value may hold: printable ASCII that a JSON string writes as itself."""
_VALUE = rb"([ !#-\[\]-~]*)"
"""A value in a shape's pattern: a run of `_PLAIN` bytes (0x20-0x7E but `"` and `\\`)."""

LIMIT = 4096
"""Shapes kept; the cache starts again past this (a log of ever-new shapes gains nothing)."""

CANDIDATES = 8
"""Shapes tried by piece lengths before the exact lookup (most recently matched first)."""


@dataclass(eq=False)
class Shape:
    """What every decision entry of one shape shares, decoded once."""

    key: ShapeKey
    """The four pieces of the entry around its three values."""
    pattern: re.Pattern[bytes]
    """The pieces with a run of plain bytes between each two: an entry it fully
    matches is exactly the pieces and three plain values."""
    template: dict[str, Any]
    """The first entry of the shape, decoded by the full decoder."""
    policy_hash: str
    result: str
    action: str
    reaches_subject: bool
    """An allow that is not an erase: it may not reach an erased subject."""
    countries: frozenset[str]
    """The principal's and the source's country (as the country check reads them)."""
    fact_middle: tuple[Any, ...]
    """Fact columns kind … purpose (analyze.py's `_fact`), the same for every entry."""
    detail: str | None
    """The fact's detail column, the same for every entry."""
    clean: bool = False
    """Its policy version is loaded and `countries` holds none of its countries of
    concern (analyze.py; set once true, as neither changes after)."""
    replay_key: tuple[Any, ...] | None = None
    """The replay key of the shape without its time (replay.py, `replay_shape`)."""
    outcomes: dict[tuple[bool, frozenset[str]], Any] = field(default_factory=dict)
    """The replay outcome of the shape for each result the policy gave."""
    timed: bool | None = None
    """Whether its policy version reads the time (once the version is loaded)."""
    replays: dict[str, Any] = field(default_factory=dict)
    """The replay outcome by the entry's time to the second ("" if the policy reads no
    time): the replay of an entry depends on nothing else but its shape (replay.py)."""


Hit = tuple[Shape, str, str, str]
"""A known shape and the entry's decision id, subject reference and time."""


def _cuts(data: bytes) -> tuple[int, int, int, int, int, int] | None:
    """Where the decision id, subject reference and time of an entry start and end,
    in order, or None if it has no such cuts."""
    a = data.find(_DECISION_ID)
    b = data.rfind(_SUBJECT_REF)
    c = data.rfind(_TIME)
    if a < 0 or b < 0 or c < 0:
        return None
    a += len(_DECISION_ID)
    b += len(_SUBJECT_REF)
    c += len(_TIME)
    a_end = data.find(b'"', a)
    b_end = data.find(b'"', b)
    c_end = data.find(b'"', c)
    if not a <= a_end < b <= b_end < c <= c_end:
        return None
    return a, a_end, b, b_end, c, c_end


def split(data: bytes) -> tuple[ShapeKey, bytes, bytes, bytes] | None:
    """The shape key of an entry and its three values, or None if it has no such cuts."""
    cuts = _cuts(data)
    if cuts is None:
        return None
    a, a_end, b, b_end, c, c_end = cuts
    key = (data[:a], data[a_end:b], data[b_end:c], data[c_end:])
    return key, data[a:a_end], data[b:b_end], data[c:c_end]


class ShapeCache:
    """The decision shapes met so far (one per monitor; shapes hold no log state)."""

    def __init__(self, limit: int = LIMIT) -> None:
        """Keep at most `limit` shapes (0: learn none, every entry is decoded in full)."""
        self.limit = limit
        self._shapes: dict[ShapeKey, Shape | None] = {}
        """None marks a key seen whose entries are not decisions of the expected layout."""
        self._by_lengths: dict[tuple[int, int, int, int], list[Shape]] = {}
        """A few shapes by the lengths of their pieces, the one matched last first."""
        self._last: Shape | None = None
        """The shape matched last: a log holds runs of one shape, tried first."""

    def __len__(self) -> int:
        """Shapes known (not counting keys that are not shapes)."""
        return sum(1 for shape in self._shapes.values() if shape is not None)

    def lookup(self, data: bytes) -> Hit | None:
        """The entry as a known shape and its three values, or None (decode it fully)."""
        last = self._last
        if last is not None:
            match = last.pattern.fullmatch(data)
            if match is not None:
                decision_id, subject_ref, time = match.groups()
                return last, decision_id.decode(), subject_ref.decode(), time.decode()
        cuts = _cuts(data)
        if cuts is None:
            return None
        a, a_end, b, b_end, c, c_end = cuts
        lengths = (a, b - a_end, c - b_end, len(data) - c_end)
        candidates = self._by_lengths.get(lengths) or []
        for shape in candidates:
            p0, p1, p2, p3 = shape.key
            if (
                data.startswith(p0)
                and data.startswith(p1, a_end)
                and data.startswith(p2, b_end)
                and data.startswith(p3, c_end)
            ):
                if shape is not candidates[0]:
                    self._first(lengths, shape)
                break
        else:
            key = (data[:a], data[a_end:b], data[b_end:c], data[c_end:])
            known = self._shapes.get(key)
            if known is None:
                return None
            shape = known
            self._first(lengths, shape)
        decision_id, subject_ref, time = data[a:a_end], data[b:b_end], data[c:c_end]
        if (decision_id + subject_ref + time).translate(None, _PLAIN):
            return None
        self._last = shape
        return shape, decision_id.decode(), subject_ref.decode(), time.decode()

    def _first(self, lengths: tuple[int, int, int, int], shape: Shape) -> None:
        """Put `shape` first among the candidates of its piece lengths."""
        candidates = self._by_lengths.setdefault(lengths, [])
        if shape in candidates:
            candidates.remove(shape)
        candidates.insert(0, shape)
        del candidates[CANDIDATES:]

    def learn(self, data: bytes, entry: dict[str, Json]) -> None:
        """Remember the shape of `data`, which the full decoder decoded to `entry`."""
        cut = split(data) if self.limit > 0 else None
        if cut is None:
            return
        key = cut[0]
        if key in self._shapes:
            return
        if len(self._shapes) >= self.limit:
            self._shapes.clear()
            self._by_lengths.clear()
            self._last = None
        shape = self._shapes[key] = _shape(key, entry)
        if shape is not None:
            self._first((len(key[0]), len(key[1]), len(key[2]), len(key[3])), shape)


def _shape(key: ShapeKey, entry: dict[str, Any]) -> Shape | None:
    """The shape of decision `entry`, if its cuts are exactly its three values."""
    if entry.get("kind") != "decision" or "subject_ref" in entry:
        return None
    probe_bytes = key[0] + b"".join(p + k for p, k in zip(_PROBES, key[1:], strict=True))
    try:
        probe = orjson.loads(probe_bytes)
        values = (
            (probe["decision_id"], entry["decision_id"]),
            (probe["input"]["resource"]["subject_ref"], entry["input"]["resource"]["subject_ref"]),
            (probe["time"], entry["time"]),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    for (seen, real), marker in zip(values, _PROBES, strict=True):
        if seen != marker.decode() or real == seen:
            return None
    return from_decision(entry, key)


def from_decision(entry: dict[str, Any], key: ShapeKey) -> Shape:
    """The per-shape values of one decision entry of pieces `key` (its values aside)."""
    data = entry.get("input") or {}
    fact = fact_row("", 0, entry)
    result = str(entry.get("result"))
    action = str(entry.get("action"))
    return Shape(
        key=key,
        pattern=re.compile(_VALUE.join(re.escape(piece) for piece in key)),
        template=entry,
        policy_hash=str(entry.get("policy_hash")),
        result=result,
        action=action,
        reaches_subject=result == "allow" and action != "erase",
        countries=frozenset(
            {
                str((data.get("principal") or {}).get("country") or ""),
                str((data.get("context") or {}).get("source_country") or ""),
            }
        ),
        fact_middle=fact[3:9],
        detail=fact[11],
    )
