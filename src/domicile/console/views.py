"""The gateway console's data: what each page shows, queried from the running runtime.

Every function returns plain values for the templates. Nothing here decrypts a vault
row or shows a field value: counts come from the directory's and vaults' indexed
tables, decisions from the region logs (which hold no personal data), and grant
actions go through the grant desk exactly as the HTTP API calls it.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from domicile.console.index import DecisionIndex, DecisionRow, Filters, newest_decisions
from domicile.console.proofs import ProofCheck, check_inclusion
from domicile.console.render import Flow, RegionBox
from domicile.console.sessions import SessionStore
from domicile.errors import DomicileError, EntryNotFound, InvalidInput, UnknownRegion
from domicile.gateway.request import AccessRequest, Action
from domicile.grants.desk import OVERSEERS
from domicile.grants.store import Grant
from domicile.ledger.entry import decode_entry
from domicile.ledger.log import RegionLog
from domicile.ledger.note import open_note, parse_note, parse_verifier_key
from domicile.principals.store import Principal
from domicile.runtime import Runtime
from domicile.vault.store import SubjectState

PAGE = 50
FLOW_COLUMNS = ("origin", "destination", "result", "category", "purpose", "count")
COMPLIANCE_SECONDS = 30.0  # a residency check walks every id: done at most this often
INLINE = 50_000  # entries a request indexes itself; a longer backlog is built in the background


@dataclass(frozen=True)
class RegionResidency:
    """One region's residency check: vault rows against the directory."""

    region: str
    stored: int  # active rows in the region's vault
    outside: int  # ... whose directory home is another region (should be 0)
    missing: int  # directory says home here, but no active vault row (should be 0)


@dataclass(frozen=True)
class Residency:
    """The residency check of every region, and when it ran."""

    checked_at: str
    seconds: float
    regions: dict[str, RegionResidency]

    @property
    def outside(self) -> int:
        """Subjects stored outside their home region, over all regions."""
        return sum(r.outside for r in self.regions.values())

    @property
    def missing(self) -> int:
        """Subjects with no copy in their home region, over all regions."""
        return sum(r.missing for r in self.regions.values())


@dataclass
class Console:
    """The gateway console's state: the runtime, the sessions and the decision indexes."""

    runtime: Runtime
    sessions: SessionStore = field(default_factory=SessionStore)
    _indexes: dict[str, DecisionIndex] = field(default_factory=dict)
    _residency: Residency | None = None
    _residency_at: float = 0.0
    _building: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def log(self, region: str) -> RegionLog:
        """The log of a region; UnknownRegion otherwise."""
        if region not in self.runtime.logs:
            raise UnknownRegion(f"no region `{region[:40]}`")
        return self.runtime.logs[region]

    def index(self, region: str) -> DecisionIndex:
        """The decision index of a region, caught up with its log.

        A request indexes what was appended since the last one. A backlog longer than
        INLINE (a big log seen for the first time) is built by a background thread
        instead, and pages say how far the index reaches until it is done.
        """
        log = self.log(region)
        with self._lock:
            index = self._indexes.get(region)
            if index is None:
                index = self._indexes[region] = DecisionIndex(log, self.runtime.catalog)
            if region in self._building:
                return index
            if log.size - index.indexed() > INLINE:
                self._building.add(region)
                threading.Thread(
                    target=self._build, args=(region, index), name=f"console-index-{region}",
                    daemon=True,
                ).start()  # fmt: skip
                return index
        index.catch_up()
        return index

    def _build(self, region: str, index: DecisionIndex) -> None:
        try:
            index.catch_up()
        except DomicileError:
            pass  # the next request starts again from the stored high-water mark
        finally:
            with self._lock:
                self._building.discard(region)

    def is_building(self, region: str) -> bool:
        """True while a background thread builds the region's index."""
        with self._lock:
            return region in self._building

    def residency(self, *, fresh: bool = False) -> Residency:
        """The residency check, recomputed when older than COMPLIANCE_SECONDS."""
        with self._lock:
            if (
                fresh
                or self._residency is None
                or (time.monotonic() - self._residency_at > COMPLIANCE_SECONDS)
            ):
                self._residency = check_residency(self.runtime)
                self._residency_at = time.monotonic()
            return self._residency


# -- overview ---------------------------------------------------------------------------


def check_residency(runtime: Runtime) -> Residency:
    """Compare every region vault's active ids with the directory's home regions.

    Ids only (no row is decrypted). A subject mid-relocation may be in both vaults for
    a moment: the directory's `moving_to`/`moved_from` markers say so, and it is not
    counted as outside its home.
    """
    started = time.monotonic()
    home: dict[str, tuple[str, str | None, str | None]] = {}
    for row in runtime.directory.db.query(
        "SELECT id, home_region, moving_to, moved_from FROM subject_directory"
        " WHERE state = 'active'"
    ):
        home[str(row[0])] = (str(row[1]), row[2], row[3])
    per_home = dict.fromkeys(runtime.topology.regions, 0)
    for region_home, _, _ in home.values():
        per_home[region_home] = per_home.get(region_home, 0) + 1
    regions: dict[str, RegionResidency] = {}
    for name, region in runtime.gateway.regions.items():
        stored = outside = at_home = 0
        for subject_id in region.vault.iter_ids(SubjectState.ACTIVE, page=5000):
            stored += 1
            entry = home.get(subject_id)
            if entry is not None and entry[0] == name:
                at_home += 1
            elif entry is None or name not in (entry[1], entry[2]):
                outside += 1
        regions[name] = RegionResidency(name, stored, outside, per_home.get(name, 0) - at_home)
    checked = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return Residency(checked, time.monotonic() - started, regions)


def _checkpoint_summary(log: RegionLog) -> dict[str, Any]:
    latest = log.latest_checkpoint()
    if latest is None:
        return {"size": 0, "root": "", "cosigners": [], "cosigned_size": 0}
    rows = log.db.query(
        "SELECT witness, MAX(size) FROM ledger_cosignatures GROUP BY witness ORDER BY witness"
    )
    cosigners = [{"witness": str(r[0]), "size": int(r[1])} for r in rows]
    return {
        "size": latest.size,
        "root": latest.root.hex(),
        "cosigners": cosigners,
        "cosigned_size": max([int(r[1]) for r in rows] + [0]),
    }


def overview(console: Console, *, fresh: bool = False) -> dict[str, Any]:
    """Regions with subject counts, residency, ledger size and last checkpoints."""
    runtime = console.runtime
    counts = runtime.directory.counts()  # one grouped count, no decryption
    residency = console.residency(fresh=fresh)
    boxes, rows = [], []
    for name, region in runtime.topology.regions.items():
        check = residency.regions.get(name, RegionResidency(name, 0, 0, 0))
        boxes.append(
            RegionBox(
                name, region.jurisdiction, region.location, counts.get(name, 0), check.outside
            )
        )
        log = runtime.logs[name]
        rows.append(
            {
                "name": name,
                "jurisdiction": region.jurisdiction,
                "location": region.location,
                "subjects": counts.get(name, 0),
                "stored": check.stored,
                "outside": check.outside,
                "missing": check.missing,
                "ledger_size": log.size,
                "checkpoint": _checkpoint_summary(log),
            }
        )
    # The monitors that witness these logs serve their own console (DOMICILE_WITNESSES).
    monitors = [spec.split()[0].rstrip("/") + "/console" for spec in runtime.settings.witnesses]
    return {"boxes": boxes, "regions": rows, "residency": residency, "monitors": monitors}


# -- flows ------------------------------------------------------------------------------


def parse_period(
    start: str | None, end: str | None, today: date | None = None
) -> tuple[date, date]:
    """The inclusive period [start, end] of the Flows page (default: the last 30 days)."""
    today = today or datetime.now(UTC).date()
    try:
        first = date.fromisoformat(start) if start else today - timedelta(days=29)
        last = date.fromisoformat(end) if end else today
    except ValueError as exc:
        raise InvalidInput("dates must be written YYYY-MM-DD") from exc
    if first > last:
        raise InvalidInput("the period must start on or before its last day")
    return first, last


def flows(console: Console, first: date, last: date) -> dict[str, Any]:
    """Transfer decisions in the period: diagram bands and a table by category and purpose."""
    start, end = first.isoformat(), (last + timedelta(days=1)).isoformat()
    bands: dict[tuple[str, str, str], int] = {}
    table: dict[tuple[str, str, str, str, str], int] = {}
    partial = []
    for region in console.runtime.topology.regions:
        index = console.index(region)
        if console.is_building(region):
            partial.append(coverage(console, region, index))
        for destination, result, categories, purpose, n in index.flows(start, end):
            key = (region, destination, result)
            bands[key] = bands.get(key, 0) + n
            for category in [c for c in categories.split(",") if c] or ["none"]:
                row = (region, destination, result, category, purpose or "—")
                table[row] = table.get(row, 0) + n
    return {
        "flows": [Flow(o, d, r, n) for (o, d, r), n in sorted(bands.items())],
        "rows": [dict(zip(FLOW_COLUMNS, (*k, n), strict=True)) for k, n in sorted(table.items())],
        "partial": partial,
        "allowed": sum(n for (_, _, r), n in bands.items() if r == "allow"),
        "denied": sum(n for (_, _, r), n in bands.items() if r != "allow"),
    }


# -- access -----------------------------------------------------------------------------


def coverage(console: Console, region: str, index: DecisionIndex) -> str:
    """What a page says while the region's index is still being built."""
    return (
        f"the search index of {region} covers {index.indexed():,} of"
        f" {console.log(region).size:,} entries so far (it is being built; reload to see more)"
    )


def access(
    console: Console, region: str, filters: Filters, before: int | None
) -> tuple[list[DecisionRow], int | None, str]:
    """A page of decisions, newest first, the `before` of the next page, and a notice
    when the search index does not reach the end of the log yet.

    Without filters the page is read from the log's newest bundles; with filters from
    the decision index (caught up first with whatever was appended since).
    """
    log = console.log(region)
    if filters.is_empty():
        return (*newest_decisions(log, console.runtime.catalog, before, PAGE), "")
    index = console.index(region)
    notice = coverage(console, region, index) if console.is_building(region) else ""
    rows = index.search(filters, before, PAGE)
    return rows, rows[-1].index if len(rows) == PAGE else None, notice


def proof(console: Console, region: str, index: int) -> dict[str, Any]:
    """One entry, its leaf hash, its inclusion proof and the checkpoint it verifies against."""
    log = console.log(region)
    if not 0 <= index < log.size:
        raise EntryNotFound(f"log of `{region}` has no entry `{index}`")
    entry = log.entry(index)
    latest = log.latest_checkpoint()
    if latest is None or latest.size <= index:
        latest = log.sign_checkpoint()  # as the API's proof bundle does
    path = log.inclusion_proof(index, latest.size)
    note = log.cosigned_note(latest)
    check: ProofCheck = check_inclusion(entry, index, path, note, log.signer.verifier())
    return {
        "region": region,
        "entry": json.dumps(decode_entry(entry), indent=2, sort_keys=True),
        "check": check,
        "note": note,
        "verifier_key": log.signer.verifier().verifier_key,
    }


# -- grants -----------------------------------------------------------------------------


def is_overseer(principal: Principal) -> bool:
    """True for approvers and officers (the desk shows them every grant)."""
    return bool(principal.roles & OVERSEERS)


def grants(console: Console, principal: Principal) -> dict[str, Any]:
    """Pending and active grants the principal may see (as `GET /v1/grants` shows them)."""
    desk = console.runtime.grants
    now = datetime.now(UTC)
    pending = desk.visible(principal, "pending")
    active = [g for g in desk.visible(principal, "approved") if g.is_active(now)]
    return {
        "pending": [_grant(g, principal) for g in pending],
        "active": [_grant(g, principal) for g in active],
        "overseer": is_overseer(principal),
    }


def _grant(grant: Grant, principal: Principal) -> dict[str, Any]:
    return {
        "id": grant.id,
        "requester": grant.requester,
        "region": grant.region,
        "subjects": len(grant.subjects),  # how many, never which
        "categories": ", ".join(grant.categories),
        "purpose": grant.purpose,
        "justification": grant.justification[:300],
        "steps": f"{len(grant.approvals)} of {grant.steps_required}",
        "approvals": ", ".join(grant.approvals) or "—",
        "created_at": grant.created_at,
        "expires_at": grant.expires_at or "—",
        "own": grant.requester == principal.id,
        "approved_by_me": principal.id in grant.approvals,
    }


def act_on_grant(console: Console, principal: Principal, grant_id: str, action: str) -> Grant:
    """Approve, deny or revoke through the grant desk: the same calls as the HTTP API."""
    desk = console.runtime.grants
    if action == "approve":
        return desk.decide(principal, grant_id, "approve")
    if action == "deny":
        return desk.decide(principal, grant_id, "deny")
    if action == "revoke":
        return desk.revoke(principal, grant_id)
    raise InvalidInput(f"no grant action `{action[:20]}`")


# -- migration --------------------------------------------------------------------------


def verify_administrator(console: Console, principal: Principal) -> None:
    """AccessDenied unless the policy lets the principal `administer` (decided, recorded)."""
    region = next(iter(console.runtime.topology.regions))
    console.runtime.gateway.decide(AccessRequest(principal, Action.ADMINISTER, region))


def migration(console: Console) -> dict[str, Any]:
    """Progress per legacy source, its quarantine and its deletion certificate (read-only)."""
    from domicile.migrate.certificate import parse_certificate
    from domicile.migrate.state import ProgressStore

    db = console.runtime.directory.db
    applied = db.query("SELECT COUNT(*) FROM schema_migrations WHERE component = 'migrate'")
    if not int(applied[0][0]):
        return {"sources": []}
    folder = console.runtime.settings.data_dir.resolve() / "migrate"
    sources = []
    for source_id, label in db.query(
        "SELECT source_id, label FROM migrate_sources ORDER BY source_id"
    ):
        progress = ProgressStore(db, str(source_id))
        counts = progress.counts()
        quarantine = [{"key": k, "reason": r} for k, r in list(progress.quarantine())[:50]]
        by_region: dict[str, int] = {}
        for batch in progress.batches(state="removed"):
            by_region[batch.region] = by_region.get(batch.region, 0) + batch.count
        cert = _certificate(folder, str(source_id), parse_certificate)
        sources.append(
            {
                "id": str(source_id),
                "label": str(label),
                "moved": counts.get("removed", 0),
                "in_flight": sum(counts.get(s, 0) for s in ("copying", "moved", "recorded")),
                "quarantined": counts["quarantined"],
                "by_region": sorted(by_region.items()),
                "quarantine": quarantine,
                "certificate": cert,
            }
        )
    return {"sources": sources}


def _certificate(folder: Path, source_id: str, parse: Any) -> dict[str, Any] | None:
    path = folder / f"{source_id}.cert"
    if not path.is_file():
        return None
    text = path.read_text()
    out: dict[str, Any] = {"path": str(path), "signature": "no verifier key found"}
    try:
        cert = parse(parse_note(text).text)
    except DomicileError as exc:
        return {**out, "problem": str(exc)}
    vkey = folder / "certificate.vkey"
    if vkey.is_file():
        try:
            open_note(text, [parse_verifier_key(vkey.read_text().strip())])
            out["signature"] = "verifies"
        except DomicileError as exc:
            out["signature"] = f"does not verify: {exc}"
    return {
        **out,
        "issued": cert.issued,
        "mode": cert.mode,
        "moved": cert.moved,
        "quarantined": cert.quarantined,
        "checkpoints": [
            {"region": r, "size": s, "root": root.hex()}
            for r, (s, root) in sorted(cert.checkpoints.items())
        ],
        "batches": len(cert.batches),
    }
