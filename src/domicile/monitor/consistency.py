"""Cross-checks between entries: transfers against agreements, erasures, migrations.

Each log records the versions of transfer agreements and of the destination registry
(`transfer` entries with `event` = `agreement-version` / `destination-version`). The
checker keeps them (in the monitor's state, per log) and holds every later transfer to
the agreement version in force *at that entry*:

* the agreement and version it names were recorded before it, and that version is the
  newest one recorded (a transfer under a superseded version is outside the agreement);
* the agreement is not terminated and the entry's time is in [valid_from, valid_until);
* destination entity and country, and purpose, are the agreement's; every field sent
  is in the agreement, with the agreement's transform; an export sends no more subjects
  than the per-request limit;
* the destination is registered as `trusted` at that time;
* the decision it cites (by index and id) is an allow.

Erasures must cite an allow decision for the same subject, and no allow decision,
transfer or custodian unwrap may reach that subject reference after it. A migration
batch (source, batch id) may appear once across all logs, and each relocation `out`
must be met by the `in` with the same relocation id in the destination's log.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from domicile.monitor.alerts import Alert
from domicile.monitor.state import MonitorState

TRANSFER_EVENTS = frozenset(
    {"remote-read", "export", "export-refused", "export-abandoned", "export-interrupted",
     "token-resolved"}
)  # fmt: skip
FOLLOW_UPS = frozenset({"export-abandoned", "export-interrupted"})
"""Entries that say how an export decided earlier ended: they send nothing of their own,
so they are held to their decision (and an interruption to its export), not to the
agreement's terms as they stand when the stream ended."""

RELOCATION_GRACE_SECONDS = 600
"""How long a relocation `out` may wait for its `in` (in entry time) before an alert."""

Row = tuple[Any, ...]
DecisionSeen = tuple[str, str, str, str | None]
"""A decision as the cross-checks need it: (decision id, result, action, subject_ref)."""


@dataclass
class Pending:
    """Rows the checker wants stored with the facts of the same chunk."""

    rows: dict[str, list[Row]] = field(default_factory=dict)

    def add(self, table: str, row: Row) -> None:
        """Queue one row for `table`."""
        self.rows.setdefault(table, []).append(row)


def parse_time(text: object) -> datetime | None:
    """An ISO 8601 time with a zone, or None."""
    try:
        parsed = datetime.fromisoformat(str(text))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def agreement_digest_ok(record: dict[str, Any]) -> bool:
    """True if the record's `digest` is the SHA-256 of the rest, canonically encoded."""
    rest = {k: v for k, v in record.items() if k != "digest"}
    canonical = json.dumps(rest, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(canonical).hexdigest() == record.get("digest")


class Consistency:
    """Cross-checks of one log's entries, with what earlier rounds stored."""

    def __init__(self, origin: str, state: MonitorState | None) -> None:
        """Check `origin`; `state` holds agreements and erasures from earlier rounds."""
        self.origin = origin
        self.state = state
        self.agreements: dict[str, dict[str, Any]] = {}
        self.destinations: dict[str, dict[str, Any]] = {}
        self.decisions: dict[int, DecisionSeen] = {}
        """Decisions of the chunk being analysed: idx → (id, result, action, subject_ref)."""
        self.erased: dict[str, int] = {}
        """Every erased subject reference of the log (kept in memory: every allowed
        decision is checked against it, and erasures are few next to decisions)."""
        if state is not None:
            self.erased.update(
                state.query("SELECT subject_ref, idx FROM erasures WHERE origin = ?", [origin])
            )
            for table, target in (
                ("agreements", self.agreements),
                ("destinations", self.destinations),
            ):
                for name, record in state.query(
                    f"SELECT name, record FROM {table} WHERE origin = ? ORDER BY idx", [origin]
                ):
                    target[name] = json.loads(record)

    # -- lookups that fall back on the stored state -------------------------------------

    def decision_at(self, index: int) -> DecisionSeen | None:
        """The decision stored or seen at `index`: (id, result, action, subject_ref)."""
        known = self.decisions.get(index)
        if known is not None or self.state is None:
            return known
        rows = self.state.query(
            "SELECT decision_id, result, action, subject_ref FROM facts"
            " WHERE origin = ? AND idx = ? AND kind = 'decision'",
            [self.origin, index],
        )
        return (rows[0][0], rows[0][1], rows[0][2], rows[0][3]) if rows else None

    def erased_at(self, subject_ref: str) -> int | None:
        """The index of the erasure of `subject_ref` in this log, if any."""
        return self.erased.get(subject_ref)

    # -- per entry ----------------------------------------------------------------------

    def decision(self, index: int, entry: dict[str, Any], out: list[Alert]) -> None:
        """Remember a decision; an allow that reaches an erased subject is an alert."""
        resource = (entry.get("input") or {}).get("resource") or {}
        ref = resource.get("subject_ref")
        result = str(entry.get("result"))
        action = str(entry.get("action"))
        self.decisions[index] = (str(entry.get("decision_id")), result, action, ref)
        if result == "allow" and ref and action != "erase":
            erased = self.erased_at(ref)
            if erased is not None and erased < index:
                out.append(self._alert(
                    "access-after-erasure", index,
                    f"an allowed `{action}` reaches a subject erased at entry {erased}",
                    erasure_index=erased, entry=entry,
                ))  # fmt: skip

    def transfer(
        self, index: int, entry: dict[str, Any], out: list[Alert], pending: Pending
    ) -> None:
        """Agreement and destination versions are kept; transfers are checked against them."""
        event = entry.get("event")
        record = entry.get("record")
        if event == "agreement-version" and isinstance(record, dict):
            if not agreement_digest_ok(record):
                out.append(self._alert(
                    "transfer-outside-agreement", index,
                    f"agreement `{record.get('id')}` version record does not match its digest",
                    entry=entry,
                ))  # fmt: skip
            name = f"{record.get('id')}"
            self.agreements[name] = record
            pending.add("agreements", (self.origin, name, index, json.dumps(record)))
        elif event == "destination-version" and isinstance(record, dict):
            name = f"{record.get('entity')}"
            self.destinations[name] = record
            pending.add("destinations", (self.origin, name, index, json.dumps(record)))
        elif event in TRANSFER_EVENTS:
            problem = self._transfer_problem(index, entry)
            if problem:
                kind, message = problem
                out.append(self._alert(kind, index, message, entry=entry))

    def _transfer_problem(self, index: int, entry: dict[str, Any]) -> tuple[str, str] | None:
        decision = self.decision_at(int(entry.get("decision_index", -1)))
        if decision is None or decision[0] != entry.get("decision_id") or decision[1] != "allow":
            return "transfer-without-decision", "the transfer cites no allow decision"
        ref = entry.get("subject_ref")
        if isinstance(ref, str):
            erased = self.erased_at(ref)
            if erased is not None and erased < index:
                return "access-after-erasure", f"a transfer of a subject erased at entry {erased}"
        agreement = self.agreements.get(str(entry.get("agreement_id")))
        if agreement is None:
            return "transfer-without-agreement", (
                f"agreement `{entry.get('agreement_id')}` was never recorded in this log"
            )
        if entry.get("event") in FOLLOW_UPS:
            export = entry.get("export_index")
            cut = entry.get("event") == "export-interrupted"
            after = int(entry.get("decision_index", -1))  # the decision was found there
            if cut and not (isinstance(export, int) and after < export < index):
                return (
                    "transfer-without-decision",
                    "the interruption cites no export after its decision",
                )
            return None
        return self._outside(agreement, entry)

    def _outside(self, agreement: dict[str, Any], entry: dict[str, Any]) -> tuple[str, str] | None:
        name = agreement.get("id")
        version = entry.get("agreement_version")
        if version is not None and version != agreement.get("version"):
            return "transfer-outside-agreement", (
                f"transfer under version {version} of `{name}`, "
                f"superseded by version {agreement.get('version')}"
            )
        at = parse_time(entry.get("time"))
        start, end = (
            parse_time(agreement.get("valid_from")),
            parse_time(agreement.get("valid_until")),
        )
        if agreement.get("terminated") or at is None or start is None or end is None:
            return "transfer-outside-agreement", f"agreement `{name}` is terminated or has no term"
        if not start <= at < end:
            return "transfer-outside-agreement", f"transfer outside the term of `{name}`"
        for key in ("destination_entity", "destination_country", "purpose"):
            if key in entry and entry[key] != agreement.get(key):
                return "transfer-outside-agreement", f"`{key}` is not the one `{name}` names"
        allowed = agreement.get("fields") or {}
        sent = entry.get("fields") or {}
        names = sent.items() if isinstance(sent, dict) else ((f, None) for f in sent)
        for field_name, transform in names:
            if field_name not in allowed or transform not in (None, allowed[field_name]):
                return (
                    "transfer-outside-agreement",
                    f"field `{field_name}` is not sent as `{name}` says",
                )
        if entry.get("event") == "token-resolved" and entry.get("field") not in allowed:
            return "transfer-outside-agreement", f"token of a field `{name}` does not send"
        limit = agreement.get("max_subjects_per_request")
        subjects = entry.get("subjects")
        if isinstance(limit, int) and isinstance(subjects, int) and subjects > limit:
            return "transfer-outside-agreement", f"{subjects} subjects, more than `{name}` allows"
        entity = entry.get("destination_entity")
        if entity is not None:
            destination = self.destinations.get(str(entity))
            if destination is None or destination.get("status") != "trusted":
                return "transfer-outside-agreement", f"destination `{entity}` is not trusted"
        return None

    def erasure(
        self, index: int, entry: dict[str, Any], out: list[Alert], pending: Pending
    ) -> None:
        """An erasure must follow an allowed erase of the same subject; remember it."""
        ref = entry.get("subject_ref")
        decision_id = entry.get("decision_id")
        found = [
            d for i, d in self.decisions.items() if d[0] == decision_id and i < index
        ] or self._stored_decision(decision_id, index)
        if not found or found[0][1] != "allow" or found[0][2] != "erase" or found[0][3] != ref:
            out.append(self._alert(
                "erasure-without-decision", index,
                "the erasure cites no allowed erase of the same subject", entry=entry,
            ))  # fmt: skip
        if isinstance(ref, str):
            self.erased[ref] = index
            pending.add("erasures", (self.origin, ref, index))

    def _stored_decision(self, decision_id: object, index: int) -> list[DecisionSeen]:
        if self.state is None:
            return []
        rows = self.state.query(
            "SELECT decision_id, result, action, subject_ref FROM facts"
            " WHERE origin = ? AND kind = 'decision' AND decision_id = ? AND idx < ?",
            [self.origin, decision_id, index],
        )
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    def migration_batch(self, index: int, entry: dict[str, Any], pending: Pending) -> None:
        """Queue the batch; the store refuses a second (source, batch id) (see `Monitor`)."""
        pending.add(
            "batches",
            (str(entry.get("source")), str(entry.get("batch_id")), self.origin, index,
             str(entry.get("root")), int(entry.get("count") or 0)),
        )  # fmt: skip

    def relocation(self, index: int, entry: dict[str, Any], pending: Pending) -> None:
        """Queue one side of a relocation for pairing across logs."""
        peer = entry.get("to") if entry.get("direction") == "out" else entry.get("from")
        pending.add(
            "relocations",
            (str(entry.get("relocation_id")), str(entry.get("direction")), self.origin, index,
             str(entry.get("time")), str(peer)),
        )  # fmt: skip

    def _alert(self, kind: str, index: int, message: str, **evidence: Any) -> Alert:
        return Alert(kind, self.origin, message, str(index), evidence, index)


def unpaired_relocations(state: MonitorState) -> list[Alert]:
    """Relocations whose `out` has no `in`, once the destination's log has moved on.

    The destination's log must have been verified up to an entry more than
    RELOCATION_GRACE_SECONDS younger than the `out` (entry times, not the wall clock).
    """
    alerts = []
    rows = state.query(
        "SELECT o.relocation_id, o.origin, o.idx, o.time, o.peer FROM relocations o"
        " WHERE o.direction = 'out' AND NOT EXISTS (SELECT 1 FROM relocations i"
        "  WHERE i.relocation_id = o.relocation_id AND i.direction = 'in')"
    )
    for relocation_id, origin, idx, time, peer in rows:
        start = parse_time(time)
        seen = parse_time(state.get(f"latest-time|{origin.rsplit('/', 1)[0]}/{peer}"))
        if start is None or seen is None:
            continue
        if (seen - start).total_seconds() > RELOCATION_GRACE_SECONDS:
            alerts.append(
                Alert(
                    "relocation-unpaired", origin,
                    f"relocation `{relocation_id}` left for `{peer}` and never arrived",
                    relocation_id, {"relocation_id": relocation_id, "to": peer}, idx,
                )
            )  # fmt: skip
    return alerts
