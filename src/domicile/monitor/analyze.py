"""What the monitor checks in each verified entry: builds, alerts, countries, replay.

An :class:`Analyzer` reads entries of one log in order and returns alerts and one fact
row per entry (kept for cross-checks, thresholds and reports). Threshold checks over
many entries (denied spikes, bulk access) run on the stored facts, in `thresholds.py`.

Entries arrive as the bytes that were re-hashed. A decision of a shape met before
(shapes.py) is checked from the shape and its own three values: its replay, the
erasure and country checks and its fact row; whenever any of them would raise an
alert, or the shape is unknown, the entry is decoded in full and takes the general
path, so every alert is raised there, with the decoded entry as its evidence.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from domicile.errors import ConfigError, LedgerError
from domicile.ledger.entry import decode_entry
from domicile.monitor.alerts import Alert
from domicile.monitor.consistency import Consistency, Pending
from domicile.monitor.facts import Fact, fact_row
from domicile.monitor.follow import FetchProblem
from domicile.monitor.replay import Replayer
from domicile.monitor.shapes import Shape, ShapeCache


@dataclass
class Analysis:
    """What analysing a run of entries produced."""

    alerts: list[Alert] = field(default_factory=list)
    facts: list[Fact] = field(default_factory=list)
    policies: list[tuple[str, int, str]] = field(default_factory=list)
    """(policy hash, ledger index, record as JSON) of each policy version met."""
    pending: Pending = field(default_factory=Pending)
    """Rows of the cross-check tables, stored with the facts."""
    latest: str = ""
    """The time of the last entry analysed."""
    shaped: dict[Shape, list[Any]] = field(default_factory=dict)
    """Fact rows of decisions of known shapes: idx, time, decision id, subject ref in turn
    for each, the other columns being the shape's (state.py, `insert_shaped_facts`)."""


class Analyzer:
    """Per-entry checks of one log."""

    def __init__(
        self,
        origin: str,
        replayer: Replayer,
        approved_builds: Collection[str],
        catalog_digest: str,
        topology_digest: str,
        consistency: Consistency | None = None,
        shapes: ShapeCache | None = None,
    ) -> None:
        """Check entries of `origin`; builds must be in `approved_builds`."""
        self.origin = origin
        self.shapes = shapes if shapes is not None else ShapeCache()
        self.consistency = consistency or Consistency(origin, None)
        self.replayer = replayer
        self.approved_builds = frozenset(approved_builds)
        self.digests = (catalog_digest, topology_digest)
        self.replay_ok = True
        self.policy_hash = ""
        """The policy version of the latest decision: its countries of concern apply."""
        self._handlers = {
            "gateway-build": self._gateway_build,
            "catalog-version": self._catalog_version,
            "policy-version": self._policy_version,
            "alert": self._alert_entry,
            "decision": self._decision,
            "transfer": self._transfer,
            "erasure": self._erasure,
            "migration-batch": self._migration_batch,
            "relocation": self._relocation,
        }

    def run(self, first: int, entries: list[bytes]) -> Analysis:
        """Analyse entries as served (the first at index `first`), oldest first.

        A decision of a known shape is checked in the loop, as `_decision` checks it
        when that raises no alert: the erasure check on its own subject, the country
        check (of the shape, once its policy version is loaded) and the replay under
        that version at its own second (replay.py, `replay_shape`). If any of them
        fails, or the entry has no known shape, it is decoded in full and takes the
        general path. An entry that does not decode raises :class:`FetchProblem`.
        """
        out = Analysis()
        consistency = self.consistency
        consistency.decisions.clear()  # earlier chunks are stored by now
        decisions = consistency.decisions
        erased = consistency.erased
        replay_shape = self.replayer.replay_shape
        lookup = self.shapes.lookup
        shaped = out.shaped
        for index, data in enumerate(entries, first):
            hit = lookup(data)
            if hit is not None:
                shape, decision_id, subject_ref, time = hit
                if (
                    (shape.clean or self._clean(shape))
                    and not (
                        shape.reaches_subject
                        and subject_ref
                        and erased.get(subject_ref, index) < index
                    )
                    and not (self.replay_ok and replay_shape(shape, time).mismatch)
                ):
                    decisions[index] = (decision_id, shape.result, shape.action, subject_ref)
                    self.policy_hash = shape.policy_hash
                    rows = shaped.get(shape)
                    if rows is None:
                        rows = shaped[shape] = []
                    rows += (index, time, decision_id, subject_ref)
                    out.latest = time
                    continue
            entry = _decode(index, data)
            if hit is None:
                self.shapes.learn(data, entry)
            self.add(index, entry, out)
        return out

    def add(self, index: int, entry: dict[str, Any], out: Analysis) -> None:
        """Analyse one decoded entry into `out`."""
        handler = self._handlers.get(str(entry["kind"]))
        if handler is not None:
            handler(index, entry, out)
        out.facts.append(fact_row(self.origin, index, entry))
        out.latest = str(entry["time"])

    def _clean(self, shape: Shape) -> bool:
        """Whether the shape's policy version is loaded and its countries are of no
        concern under it (kept on the shape once true: neither changes after)."""
        concern = self.replayer.countries_of_concern(shape.policy_hash)
        shape.clean = shape.policy_hash in self.replayer.engines and not (shape.countries & concern)
        return shape.clean

    def _alert(
        self,
        out: Analysis,
        kind: str,
        index: int,
        message: str,
        severity: str = "critical",
        **evidence: Any,
    ) -> None:
        out.alerts.append(Alert(kind, self.origin, message, str(index), evidence, index, severity))

    def _gateway_build(self, index: int, entry: dict[str, Any], out: Analysis) -> None:
        digest = str(entry.get("digest"))
        if digest not in self.approved_builds:
            self._alert(
                out, "unknown-build", index, f"gateway build `{digest[:16]}` is not approved",
                digest=digest, version=entry.get("version"), entry=entry,
            )  # fmt: skip

    def _catalog_version(self, index: int, entry: dict[str, Any], out: Analysis) -> None:
        logged = (entry.get("digest"), entry.get("topology_digest"))
        self.replay_ok = logged == self.digests
        if not self.replay_ok:
            self._alert(
                out, "replay-unavailable", index,
                "the log's catalog or topology is not the monitor's: decisions are not replayed",
                entry=entry, monitor={"catalog": self.digests[0], "topology": self.digests[1]},
            )  # fmt: skip

    def _policy_version(self, index: int, entry: dict[str, Any], out: Analysis) -> None:
        record = {k: v for k, v in entry.items() if k not in {"v", "kind", "region", "time"}}
        try:
            policy_hash = self.replayer.add_version(record)
        except (ConfigError, KeyError, TypeError) as exc:
            self._alert(out, "replay-unavailable", index, f"policy version does not load: {exc}")
            return
        out.policies.append((policy_hash, index, json.dumps(record, sort_keys=True)))

    def _alert_entry(self, index: int, entry: dict[str, Any], out: Analysis) -> None:
        name = str(entry.get("alert"))
        self._alert(
            out, "break-glass", index, f"the gateway raised `{name}`",
            severity="high", entry=entry,
        )  # fmt: skip

    def _transfer(self, index: int, entry: dict[str, Any], out: Analysis) -> None:
        self.consistency.transfer(index, entry, out.alerts, out.pending)
        country = entry.get("destination_country")
        if country and country in self.replayer.countries_of_concern(self.policy_hash):
            self._alert(
                out, "country-of-concern", index,
                f"data sent to {country} ({entry.get('event')})", severity="high", entry=entry,
            )  # fmt: skip

    def _erasure(self, index: int, entry: dict[str, Any], out: Analysis) -> None:
        self.consistency.erasure(index, entry, out.alerts, out.pending)

    def _migration_batch(self, index: int, entry: dict[str, Any], out: Analysis) -> None:
        self.consistency.migration_batch(index, entry, out.pending)

    def _relocation(self, index: int, entry: dict[str, Any], out: Analysis) -> None:
        self.consistency.relocation(index, entry, out.pending)

    def _decision(self, index: int, entry: dict[str, Any], out: Analysis) -> None:
        self.consistency.decision(index, entry, out.alerts)
        policy_hash = self.policy_hash = str(entry.get("policy_hash"))
        if policy_hash not in self.replayer.engines:
            self._alert(
                out, "policy-not-recorded", index,
                f"decision under policy `{policy_hash[:16]}`, which the log never recorded",
                entry=entry,
            )  # fmt: skip
            return
        self._country(index, entry, policy_hash, out)
        if not self.replay_ok:
            return
        outcome = self.replayer.replay(entry)
        if outcome.mismatch:
            self._alert(out, outcome.mismatch, index, outcome.detail, entry=entry)

    def _country(self, index: int, entry: dict[str, Any], policy_hash: str, out: Analysis) -> None:
        concern = self.replayer.countries_of_concern(policy_hash)
        data = entry.get("input") or {}
        countries = {
            str((data.get("principal") or {}).get("country") or ""),
            str((data.get("context") or {}).get("source_country") or ""),
        } & concern
        if countries:
            self._alert(
                out, "country-of-concern", index,
                f"access attempt involving {', '.join(sorted(countries))} ({entry.get('result')})",
                severity="high", entry=entry,
            )  # fmt: skip


def _decode(index: int, data: bytes) -> dict[str, Any]:
    try:
        return decode_entry(data)
    except LedgerError as exc:
        raise FetchProblem(f"entry {index} does not decode: {exc}") from None
