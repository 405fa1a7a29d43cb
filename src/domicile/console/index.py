"""The console's index of a region's decision entries, kept in the region's ledger database.

The log itself is the truth; this index only makes searching and counting it cheap.
It is built by the console on demand, from the log's stored entry bundles, from a
stored high-water mark (`console_progress.indexed`) to the integrated size, so a
request indexes only what was appended since the last one. Rows hold the decision
attributes the Access and Flows pages filter on, never anything the entry does not
hold (and entries hold no personal data). Unfiltered paging does not need the index
at all: the Access page reads the newest bundles backward.

A migration that adds a column resets the high-water mark to 0, so the rows indexed
before it are derived again (upserted: they stay searchable meanwhile).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from domicile.catalog.catalog import Catalog
from domicile.errors import DomicileError, LedgerError
from domicile.ledger.entry import decode_entry
from domicile.ledger.log import RegionLog
from domicile.ledger.tiles import TILE_HEIGHT, TILE_WIDTH
from domicile.storage.database import Database
from domicile.storage.migrations import migrate

BATCH = 20_000  # entries indexed per transaction: progress survives an interrupted build

_COLUMNS = (
    "idx, time, principal, purpose, action, result, categories, policy_ids, destination,"
    " destination_country"
)
_UPSERT = (
    f"INSERT INTO console_decisions ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (idx) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS.replace(" ", "").split(",")[1:])
)


@dataclass(frozen=True)
class DecisionRow:
    """One decision as the Access page lists it."""

    index: int
    time: str
    principal: str
    purpose: str
    action: str
    result: str
    categories: tuple[str, ...]
    policy_ids: tuple[str, ...]
    destination: str | None
    """Where a transfer's request comes from (None for decisions that are not transfers)."""
    destination_country: str | None
    """Where a transfer's agreement sends the data (`input.context.destination_country`):
    "" for a transfer under no agreement, None for decisions that are not transfers."""


@dataclass(frozen=True)
class Filters:
    """What the Access page searches for (empty strings match everything)."""

    principal: str = ""
    purpose: str = ""
    category: str = ""
    result: str = ""
    policy_id: str = ""
    destination_country: str = ""

    def is_empty(self) -> bool:
        """True when nothing narrows the search."""
        return not (
            self.principal
            or self.purpose
            or self.category
            or self.result
            or self.policy_id
            or self.destination_country
        )


def _framed(values: Sequence[str]) -> str:
    return "," + ",".join(values) + "," if values else ","


def _unframe(text: str) -> tuple[str, ...]:
    return tuple(v for v in text.split(",") if v)


def categories_of(catalog: Catalog, fields: Sequence[Any]) -> list[str]:
    """The sorted categories of the named catalog fields (unknown names are skipped)."""
    found = set()
    for name in fields:
        spec = catalog.fields.get(str(name))
        if spec is not None:
            found.add(spec.category.value)
    return sorted(found)


def decision_row(index: int, body: Mapping[str, Any], catalog: Catalog) -> DecisionRow | None:
    """The index row of a decoded entry, or None if it is not a decision."""
    if body.get("kind") != "decision":
        return None
    inputs = body.get("input") or {}
    principal = inputs.get("principal") or {}
    resource = inputs.get("resource") or {}
    context = inputs.get("context") or {}
    allowed = body.get("result") == "allow"
    fields = body.get("allowed_fields") if allowed else resource.get("fields")
    destination = destination_country = None
    if "transfer_agreement" in context:  # only transfers carry it (see decision_event)
        destination = str(context.get("source_country") or principal.get("country") or "??")
        # null under no agreement; absent from records made before decisions carried it
        destination_country = str(context.get("destination_country") or "")
    return DecisionRow(
        index=index,
        time=str(body.get("time", "")),
        principal=str(principal.get("id", "")),
        purpose=str(context.get("purpose") or ""),
        action=str(body.get("action", "")),
        result=str(body.get("result", "")),
        categories=tuple(categories_of(catalog, fields or [])),
        policy_ids=tuple(str(p) for p in body.get("policy_ids") or []),
        destination=destination,
        destination_country=destination_country,
    )


def _row(r: Sequence[Any]) -> DecisionRow:
    return DecisionRow(
        int(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4]), str(r[5]),
        _unframe(str(r[6])), _unframe(str(r[7])), None if r[8] is None else str(r[8]),
        None if r[9] is None else str(r[9]),
    )  # fmt: skip


class DecisionIndex:
    """The index of one region's decisions (tables `console_decisions`, `console_progress`)."""

    def __init__(self, log: RegionLog, catalog: Catalog) -> None:
        self.log = log
        self.db: Database = log.db
        self.catalog = catalog
        self._lock = threading.Lock()
        migrate(self.db, "console", "domicile.console")

    def indexed(self) -> int:
        """How many entries of the log the index covers."""
        (row,) = self.db.query("SELECT indexed FROM console_progress WHERE id = 1")
        return int(row[0])

    def catch_up(self, limit: int | None = None) -> int:
        """Index the entries appended since the high-water mark; return how far it reaches."""
        with self._lock:
            start = self.indexed()
            goal = self.log.size if limit is None else min(self.log.size, start + limit)
            while start < goal:
                end = min(goal, start + BATCH)
                self._index_range(start, end)
                start = end
            return start

    def _index_range(self, start: int, end: int) -> None:
        rows: list[tuple[Any, ...]] = []
        for bundle in range(start >> TILE_HEIGHT, ((end - 1) >> TILE_HEIGHT) + 1):
            first = bundle << TILE_HEIGHT
            for offset, data in enumerate(self.log.bundle(bundle)):
                index = first + offset
                if not start <= index < end:
                    continue
                try:
                    row = decision_row(index, decode_entry(data), self.catalog)
                except LedgerError:
                    continue  # fsck and the monitor report malformed entries; skip them here
                if row is not None:
                    rows.append(
                        (row.index, row.time, row.principal, row.purpose, row.action,
                         row.result, _framed(row.categories), _framed(row.policy_ids),
                         row.destination, row.destination_country)
                    )  # fmt: skip
        with self.db.transaction() as tx:
            # Upserted: a row indexed before a migration added a column is derived again.
            tx.executemany(_UPSERT, rows)
            tx.execute("UPDATE console_progress SET indexed = ? WHERE id = 1", (end,))

    def search(self, filters: Filters, before: int | None, limit: int) -> list[DecisionRow]:
        """Matching decisions, newest first, with index below `before` (keyset paging)."""
        where: list[str] = ["1 = 1"]
        params: list[object] = []
        if before is not None:
            where.append("idx < ?")
            params.append(before)
        for column, value in (
            ("principal", filters.principal),
            ("purpose", filters.purpose),
            ("result", filters.result),
            ("destination_country", filters.destination_country),
        ):
            if value:
                where.append(f"{column} = ?")
                params.append(value)
        if filters.category:
            where.append("categories LIKE ?")
            params.append(f"%,{_like(filters.category)},%")
        if filters.policy_id:
            where.append("policy_ids LIKE ?")
            params.append(f"%,{_like(filters.policy_id)},%")
        rows = self.db.query(
            f"SELECT {_COLUMNS} FROM console_decisions WHERE {' AND '.join(where)}"
            " ORDER BY idx DESC LIMIT ?",
            (*params, limit),
        )
        return [_row(r) for r in rows]

    def flows(self, start: str, end: str) -> list[tuple[str, str, str, str, int]]:
        """Transfer decisions in [start, end): (destination, result, categories, purpose, n).

        The destination is where the data goes: the agreement's recipient country when
        one applies (an export by an Irish officer to a US recipient goes to the US),
        else the country the request came from (a remote read)."""
        rows = self.db.query(
            "SELECT COALESCE(NULLIF(destination_country, ''), destination) AS goes_to,"
            " result, categories, purpose, COUNT(*) FROM console_decisions"
            " WHERE destination IS NOT NULL AND time >= ? AND time < ?"
            " GROUP BY goes_to, result, categories, purpose",
            (start, end),
        )
        return [(str(r[0]), str(r[1]), str(r[2]), str(r[3]), int(r[4])) for r in rows]


def _like(value: str) -> str:
    # Commas frame the members and LIKE wildcards must match literally: refuse both.
    return value.replace("%", "").replace("_", "").replace(",", "")


def newest_decisions(
    log: RegionLog, catalog: Catalog, before: int | None, limit: int
) -> tuple[list[DecisionRow], int | None]:
    """Decisions with index below `before`, newest first, read from the newest bundles,
    and the `before` of the next page (None at the start of the log).

    Reads one bundle (256 entries) at a time, backward, and stops when `limit` are found
    or after 64 bundles (so a stretch without decisions cannot make a page slow).
    """
    end = log.size if before is None else min(before, log.size)
    out: list[DecisionRow] = []
    bundle = (end - 1) >> TILE_HEIGHT if end > 0 else -1
    budget = 64
    while bundle >= 0 and len(out) < limit and budget > 0:
        try:
            entries = log.bundle(bundle)
        except DomicileError:
            break
        first = bundle * TILE_WIDTH
        for offset in range(len(entries) - 1, -1, -1):
            index = first + offset
            if index >= end:
                continue
            try:
                row = decision_row(index, decode_entry(entries[offset]), catalog)
            except LedgerError:
                continue
            if row is not None:
                out.append(row)
                if len(out) == limit:
                    return out, row.index
        bundle -= 1
        budget -= 1
    return out, (bundle + 1) * TILE_WIDTH if bundle >= 0 else None
