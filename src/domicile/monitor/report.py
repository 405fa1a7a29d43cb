"""The audit report: what a gateway's logs show over a period, traceable to ledger entries.

Built only from the monitor's own state (`facts` are stored for an entry only after the
entries re-hashed to a signed root), its alerts and its checkpoints. Every figure carries
`sources`: per log, how many entries it was computed from and their ledger indices (as
ranges, capped). Each log's `anchor` is the last verified checkpoint, which covers every
index below its size: an inclusion proof for any listed index checks it against that
signed note. No subject reference, field value, token or justification is written.
"""

from __future__ import annotations

import html
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from string import Template
from typing import Any

from domicile.catalog.catalog import Catalog
from domicile.errors import DomicileError
from domicile.ledger.note import parse_note
from domicile.monitor.follow import region_of
from domicile.monitor.state import MonitorState

FORMAT = "domicile-monitor-report/1"
MAX_RANGES = 50
"""Index ranges listed per figure and log; `truncated` says when there were more."""
UNCATEGORISED = "uncatalogued"


def parse_time(text: str) -> datetime:
    """An ISO 8601 time (a date alone is midnight); naive times are UTC."""
    value = datetime.fromisoformat(text.strip())
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


class Sources:
    """Ledger indices a figure was computed from, per log origin."""

    def __init__(self) -> None:
        """Empty."""
        self.by_origin: dict[str, set[int]] = defaultdict(set)

    def add(self, origin: str, index: int) -> None:
        """Count entry `index` of `origin`."""
        self.by_origin[origin].add(index)

    def merge(self, other: Sources) -> None:
        """Add every index of `other`."""
        for origin, indices in other.by_origin.items():
            self.by_origin[origin] |= indices

    def json(self) -> dict[str, Any]:
        """{region: {entries, ranges, truncated}}, ranges as `a-b` or `a`."""
        out: dict[str, Any] = {}
        for origin in sorted(self.by_origin):
            ranges = _ranges(sorted(self.by_origin[origin]))
            out[region_of(origin)] = {
                "entries": len(self.by_origin[origin]),
                "ranges": ranges[:MAX_RANGES],
                "truncated": len(ranges) > MAX_RANGES,
            }
        return out


def _ranges(indices: list[int]) -> list[str]:
    out: list[str] = []
    start = prev = -2
    for i in indices:
        if i != prev + 1:
            if start >= 0:
                out.append(str(start) if start == prev else f"{start}-{prev}")
            start = i
        prev = i
    if start >= 0:
        out.append(str(start) if start == prev else f"{start}-{prev}")
    return out


@dataclass
class Figure:
    """Counters and the entries behind them."""

    counts: Counter[str] = field(default_factory=Counter)
    subjects: set[tuple[str, str]] = field(default_factory=set)
    extra: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    sources: Sources = field(default_factory=Sources)

    def merge(self, other: Figure) -> None:
        """Add `other` into this figure."""
        self.counts.update(other.counts)
        self.subjects |= other.subjects
        for key, values in other.extra.items():
            self.extra[key] |= values
        self.sources.merge(other.sources)

    def json(self) -> dict[str, Any]:
        """The figure's counts, its distinct-subject count, lists, and sources."""
        out: dict[str, Any] = dict(sorted(self.counts.items()))
        if self.subjects:
            out["distinct_subjects"] = len(self.subjects)
        for key, values in sorted(self.extra.items()):
            out[key] = sorted(values)
        out["sources"] = self.sources.json()
        return out


Section = dict[str, Figure]


@dataclass
class RegionFigures:
    """Every figure of one log over the period."""

    volumes: Section = field(default_factory=lambda: defaultdict(Figure))
    purposes: Section = field(default_factory=lambda: defaultdict(Figure))
    principals: Section = field(default_factory=lambda: defaultdict(Figure))
    entities: Section = field(default_factory=lambda: defaultdict(Figure))
    transfers: Section = field(default_factory=lambda: defaultdict(Figure))
    approvals: Section = field(default_factory=lambda: defaultdict(Figure))
    entries: Section = field(default_factory=lambda: defaultdict(Figure))

    SECTIONS = ("entries", "volumes", "purposes", "principals", "entities", "transfers",
                "approvals")  # fmt: skip

    def merge(self, other: RegionFigures) -> None:
        """Add `other` into this one."""
        for name in self.SECTIONS:
            mine, theirs = getattr(self, name), getattr(other, name)
            for key, fig in theirs.items():
                mine[key].merge(fig)

    def json(self) -> dict[str, Any]:
        """Each section: {key: figure}."""
        return {
            name: {k: f.json() for k, f in sorted(getattr(self, name).items())}
            for name in self.SECTIONS
        }


class _Builder:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def category(self, name: str) -> str:
        spec = self.catalog.fields.get(name)
        return spec.category.value if spec else UNCATEGORISED

    def add(self, figs: RegionFigures, origin: str, row: tuple[Any, ...]) -> None:
        idx, kind, result, action, principal, entity, purpose, subject, detail = row
        data: dict[str, Any] = json.loads(detail) if detail else {}
        entry = figs.entries[kind]
        entry.counts["entries"] += 1
        entry.sources.add(origin, idx)
        if kind == "decision":
            self.decision(figs, origin, idx, result, action, principal, entity, purpose,
                          subject, data)  # fmt: skip
        elif kind == "transfer":
            self.transfer(figs, origin, idx, data)
        elif kind == "grant-step":
            self.grant_step(figs, origin, idx, data)

    def decision(
        self, figs: RegionFigures, origin: str, idx: int, result: str, action: str,
        principal: str | None, entity: str | None, purpose: str | None, subject: str | None,
        data: dict[str, Any],
    ) -> None:  # fmt: skip
        outcome = "allowed" if result == "allow" else "denied"
        for fig in (
            figs.purposes[purpose or "(none)"],
            figs.principals[principal or "(unknown)"],
            figs.entities[entity or "(unknown)"],
        ):
            fig.counts["decisions"] += 1
            fig.counts[outcome] += 1
            fig.counts[f"{action}:{outcome}"] += 1
            fig.sources.add(origin, idx)
        if entity and principal:
            figs.principals[principal].extra["entity"].add(entity)
            figs.entities[entity].extra["principals"].add(principal)
        if purpose:
            figs.principals[principal or "(unknown)"].extra["purposes"].add(purpose)
        if result != "allow":
            return
        per_category = Counter(self.category(name) for name in data.get("allowed") or [])
        for category, fields in per_category.items():
            fig = figs.volumes[category]
            fig.counts["decisions"] += 1
            fig.counts["fields"] += fields
            fig.counts[f"{action}:fields"] += fields
            if subject:
                fig.subjects.add((origin, subject))
            fig.sources.add(origin, idx)

    def transfer(self, figs: RegionFigures, origin: str, idx: int, data: dict[str, Any]) -> None:
        event = str(data.get("event") or "(none)")
        found = data.get("record")
        record: dict[str, Any] = found if isinstance(found, dict) else {}
        country = data.get("destination_country") or record.get("destination_country")
        dest_entity = data.get("destination_entity") or record.get("destination_entity")
        key = f"{country or '?'} / {dest_entity or '?'}" if country or dest_entity else f"({event})"
        fig = figs.transfers[key]
        fig.counts["events"] += 1
        fig.counts[f"event:{event}"] += 1
        fig.counts["subjects_sent"] += int(data.get("subjects") or 0)
        agreement = data.get("agreement_id") or record.get("id")
        if agreement:
            fig.extra["agreements"].add(str(agreement))
        if data.get("purpose"):
            fig.extra["purposes"].add(str(data["purpose"]))
        fields = data.get("fields")
        if isinstance(fields, dict):
            for name in fields:
                fig.counts[f"fields:{self.category(name)}"] += 1
        fig.sources.add(origin, idx)

    def grant_step(self, figs: RegionFigures, origin: str, idx: int, data: dict[str, Any]) -> None:
        fig = figs.approvals[str(data.get("grant_id") or "(none)")]
        fig.counts["steps"] += 1
        fig.counts[f"step:{data.get('step')}"] += 1
        if data.get("by"):
            fig.extra[f"{data.get('step')}_by"].add(str(data["by"]))
        if data.get("requester"):
            fig.extra["requester"].add(str(data["requester"]))
        for category in data.get("categories") or []:
            fig.extra["categories"].add(str(category))
        if data.get("purpose"):
            fig.extra["purposes"].add(str(data["purpose"]))
        fig.extra["state"] = {str(data.get("state"))}  # the latest step's state
        fig.counts["subjects"] = max(fig.counts["subjects"], len(data.get("subject_refs") or []))
        fig.sources.add(origin, idx)


def _anchor(state: MonitorState, origin: str) -> dict[str, Any] | None:
    verified = state.verified(origin)
    if verified is None:
        return None
    note = parse_note(verified.note)
    signatures = [{"name": s.name, "key_id": f"{s.key_id:08x}"} for s in note.signatures]
    out: dict[str, Any] = {
        "origin": origin,
        "size": verified.size,
        "root_hex": verified.root.hex(),
        "note": verified.note,
        "signatures": [s for s in signatures if s["name"] == origin],
        "cosignatures": [s for s in signatures if s["name"] != origin],
        "covers": f"0-{verified.size - 1}" if verified.size else "",
    }
    witnessed = state.witnessed(origin)
    if witnessed:
        out["witnessed_by_this_monitor"] = {"size": witnessed[0], "note": witnessed[2]}
    region = region_of(origin)
    out["check"] = (
        f"every index in this region's sources is below {verified.size}, so this signed "
        f"checkpoint covers it: fetch /v1/regions/{region}/log/proof/inclusion?index=I"
        f"&size={verified.size} (or `domicile ledger proof --region {region} --index I`) "
        "and verify it against this note with the log's key"
    )
    return out


def _in_period(time: str, start: datetime | None, end: datetime | None) -> bool:
    try:
        value = parse_time(time)
    except ValueError:
        return False
    return (start is None or value >= start) and (end is None or value < end)


def _alerts(
    state: MonitorState, start: datetime | None, end: datetime | None, kept: dict[str, set[int]]
) -> dict[str, Any]:
    listed: list[dict[str, Any]] = []
    by_kind: dict[str, Figure] = defaultdict(Figure)
    after = 0
    while True:
        page = state.alerts(after=after)
        if not page:
            break
        after = page[-1]["id"]
        for alert in page:
            index = alert["index"]
            if index is not None:
                if index not in kept.get(alert["origin"], set()):
                    continue
            elif not _in_period(alert["time"], start, end):
                continue
            listed.append(
                {
                    "id": alert["id"],
                    "raised_at": alert["time"],
                    "kind": alert["kind"],
                    "severity": alert["severity"],
                    "region": region_of(alert["origin"]),
                    "message": alert["message"],
                    "index": index,
                }
            )
            fig = by_kind[alert["kind"]]
            fig.counts["alerts"] += 1
            fig.counts[f"severity:{alert['severity']}"] += 1
            if index is not None:
                fig.sources.add(alert["origin"], index)
    return {
        "by_kind": {k: f.json() for k, f in sorted(by_kind.items())},
        "list": listed,
        "note": "alerts about a whole log (split views, forks, rewrites) carry no index; "
        "their evidence (both signed checkpoints) is kept in the monitor's state",
    }


def build_report(
    state: MonitorState,
    catalog: Catalog,
    start: datetime | None = None,
    end: datetime | None = None,
) -> dict[str, Any]:
    """The report over [start, end) from the monitor's state, as a JSON-ready dict."""
    builder = _Builder(catalog)
    origins = [r[0] for r in state.query("SELECT origin FROM logs ORDER BY origin")]
    regions: dict[str, Any] = {}
    totals = RegionFigures()
    kept: dict[str, set[int]] = {}
    for origin in origins:
        figs = RegionFigures()
        indices: set[int] = set()
        rows = state.query(
            "SELECT idx, time, kind, result, action, principal, entity, purpose, subject_ref,"
            " detail FROM facts WHERE origin = ?"
            " AND idx < (SELECT size FROM logs WHERE origin = ?) ORDER BY idx",
            [origin, origin],
        )
        for idx, time, *rest in rows:
            if not _in_period(time, start, end):
                continue
            indices.add(idx)
            builder.add(figs, origin, (idx, *rest))
        kept[origin] = indices
        anchor = _anchor(state, origin)
        regions[region_of(origin)] = {
            "origin": origin,
            "entries_in_period": len(indices),
            "first_index": min(indices) if indices else None,
            "last_index": max(indices) if indices else None,
            "anchor": anchor,
            **figs.json(),
        }
        totals.merge(figs)
    return {
        "format": FORMAT,
        "generated_at": _iso(datetime.now(UTC)),
        "period": {"from": _iso(start), "to": _iso(end), "bounds": "[from, to)"},
        "catalog": {"version": catalog.version, "digest": catalog.digest()},
        "how_to_check": (
            "Each figure lists, per region, the ledger indices it was computed from "
            "(`sources`: entries counted and index ranges, capped at "
            f"{MAX_RANGES} ranges). Each region's `anchor` is the last checkpoint the "
            "monitor verified by re-hashing every entry; it covers indices 0 to size-1. "
            "Fetch an entry with /v1/regions/R/log/entries?start=I&count=1 and its "
            "inclusion proof against the anchor to recompute any figure."
        ),
        "regions": regions,
        "totals": totals.json(),
        "alerts": _alerts(state, start, end, kept),
    }


# -- HTML -----------------------------------------------------------------------------

_PAGE = Template("""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Domicile audit report $period</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em;max-width:75em}
table{border-collapse:collapse;margin:.5em 0 1.5em}
td,th{border:1px solid #bbb;padding:.2em .5em;text-align:left;vertical-align:top;font-size:90%}
th{background:#eee} pre{font-size:80%;background:#f6f6f6;padding:.5em;overflow-x:auto}
.src{color:#555;font-family:monospace;font-size:85%}
</style></head><body>
<h1>Domicile audit report</h1>
<p>Period: $period. Generated $generated. Catalog $catalog.</p>
<p>$how</p>
$body
</body></html>
""")


def _e(value: object) -> str:
    return html.escape(str(value))


def _sources_html(sources: dict[str, Any]) -> str:
    parts = []
    for region, src in sources.items():
        more = " …" if src["truncated"] else ""
        parts.append(f"{_e(region)} ({src['entries']}): {_e(', '.join(src['ranges']))}{more}")
    return "<span class=src>" + "<br>".join(parts) + "</span>"


def _table(title: str, section: dict[str, Any]) -> str:
    if not section:
        return f"<h3>{_e(title)}</h3><p>None.</p>"
    rows = []
    for key, fig in section.items():
        values = "; ".join(
            f"{_e(k)}: {_e(', '.join(v) if isinstance(v, list) else v)}"
            for k, v in fig.items()
            if k != "sources"
        )
        rows.append(f"<tr><td>{_e(key)}</td><td>{values}</td>"
                    f"<td>{_sources_html(fig['sources'])}</td></tr>")  # fmt: skip
    return (
        f"<h3>{_e(title)}</h3><table><tr><th></th><th>figures</th><th>ledger entries</th></tr>"
        + "".join(rows)
        + "</table>"
    )


_TITLES = {
    "entries": "Entries by kind",
    "volumes": "Data volumes per category (fields of allowed decisions)",
    "purposes": "Purposes (decisions)",
    "principals": "Principals",
    "entities": "Entities",
    "transfers": "Transfer destinations",
    "approvals": "Approvals (grant steps)",
}


def _figures_html(figs: dict[str, Any]) -> str:
    return "".join(_table(_TITLES[name], figs[name]) for name in RegionFigures.SECTIONS)


def render_html(report: dict[str, Any]) -> str:
    """The report as one self-contained HTML page."""
    body: list[str] = []
    for region, data in report["regions"].items():
        body.append(f"<h2>Region {_e(region)}</h2>")
        anchor = data["anchor"]
        span = f"{_e(data['first_index'])}–{_e(data['last_index'])}"
        body.append(f"<p>{data['entries_in_period']} entries in the period (indices {span}).</p>")
        if anchor:
            cosigners = ", ".join(c["name"] for c in anchor["cosignatures"]) or "none"
            body.append(
                f"<p>Anchored by checkpoint of size {anchor['size']} "
                f"(covers {_e(anchor['covers'])}); cosignatures: {_e(cosigners)}.</p>"
                f"<pre>{_e(anchor['note'])}</pre><p>{_e(anchor['check'])}</p>"
            )
        body.append(_figures_html(data))
    body.append("<h2>All regions</h2>" + _figures_html(report["totals"]))
    alerts = report["alerts"]
    body.append(_table("Alerts by kind", alerts["by_kind"]))
    rows = "".join(
        f"<tr><td>{a['id']}</td><td>{_e(a['raised_at'])}</td><td>{_e(a['kind'])}</td>"
        f"<td>{_e(a['severity'])}</td><td>{_e(a['region'])}</td><td>{_e(a['index'])}</td>"
        f"<td>{_e(a['message'])}</td></tr>"
        for a in alerts["list"]
    )
    body.append(
        "<h3>Alerts</h3><table><tr><th>id</th><th>raised</th><th>kind</th><th>severity</th>"
        f"<th>region</th><th>index</th><th>message</th></tr>{rows}</table>"
        f"<p>{_e(alerts['note'])}</p>"
    )
    period = report["period"]
    return _PAGE.substitute(
        period=_e(f"{period['from'] or 'start'} to {period['to'] or 'now'}"),
        generated=_e(report["generated_at"]),
        catalog=_e(f"{report['catalog']['version']} ({report['catalog']['digest'][:16]}…)"),
        how=_e(report["how_to_check"]),
        body="\n".join(body),
    )


def write_report(
    state: MonitorState,
    catalog: Catalog,
    out: Path,
    start: datetime | None = None,
    end: datetime | None = None,
) -> dict[str, Any]:
    """Write `out/report.json` and `out/report.html`; return the report."""
    report = build_report(state, catalog, start, end)
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(json.dumps(report, indent=2, sort_keys=False) + "\n")
        (out / "report.html").write_text(render_html(report))
    except OSError as exc:
        raise DomicileError(f"cannot write the report to `{out}`: {exc}") from exc
    return report
