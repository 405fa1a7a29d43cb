"""The monitor: follow every log once, cross-check unwraps, raise and deliver alerts."""

from __future__ import annotations

import gc
import hmac
import json
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from domicile.catalog.catalog import Catalog, load_catalog
from domicile.errors import CryptoError, LedgerError
from domicile.ledger.checkpoint import Checkpoint, open_checkpoint
from domicile.ledger.merkle import CompactRange
from domicile.ledger.note import Ed25519Verifier, parse_verifier_key
from domicile.monitor.alerts import LOG, Alert, Sink, log_line
from domicile.monitor.analyze import Analysis, Analyzer
from domicile.monitor.backend import Connection
from domicile.monitor.client import LogClient
from domicile.monitor.consistency import Consistency, unpaired_relocations
from domicile.monitor.follow import FetchProblem, Follower, Unavailable, split_view_alert
from domicile.monitor.replay import Replayer
from domicile.monitor.shapes import ShapeCache
from domicile.monitor.state import (
    FACT_COLUMNS,
    FORGETTABLE,
    MonitorState,
    Verified,
    insert_shaped_facts,
    upsert_sql,
)
from domicile.monitor.thresholds import Thresholds, threshold_alerts
from domicile.residency.topology import Topology, load_topology

STATE_FILE = "monitor.db"


@dataclass
class MonitorConfig:
    """What a monitor is told on its command line."""

    data_dir: Path
    log_keys: Sequence[str]
    approved_builds: Collection[str] = ()
    thresholds: Thresholds = field(default_factory=Thresholds)
    topology_file: Path | None = None
    catalog_file: Path | None = None
    sinks: Sequence[Sink] = (log_line,)
    peers: Sequence[str] = ()
    """Base URLs of other monitors whose verified checkpoints are compared with ours."""
    state_url: str | None = None
    """A postgresql:// url (with `?schema=`) for the state; default a SQLite file in data_dir."""


class Monitor:
    """Follows the region logs of one gateway with its own state."""

    def __init__(self, config: MonitorConfig, client: LogClient) -> None:
        """Open the state in `config.data_dir` and parse the log keys."""
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.config = config
        self.client = client
        self.state = MonitorState(config.state_url or config.data_dir / STATE_FILE)
        self.verifiers: dict[str, Ed25519Verifier] = {}
        for text in config.log_keys:
            verifier = parse_verifier_key(text.strip())
            self.verifiers[verifier.name] = verifier
        topology: Topology = load_topology(config.topology_file)
        catalog: Catalog = load_catalog(config.catalog_file)
        self.replayer = Replayer(topology, catalog)
        self.shapes = ShapeCache()
        """Decision shapes met in any log (they hold nothing of a log's state)."""
        self._digests = (catalog.digest(), topology.digest())

    def close(self) -> None:
        """Close the state."""
        self.state.close()

    def emit(self, alerts: Sequence[Alert]) -> int:
        """Store new alerts and deliver them to every sink; return how many were new."""
        fresh = 0
        for alert in alerts:
            if self.state.add_alert(alert):
                fresh += 1
                for sink in self.config.sinks:
                    sink(alert.record())
        return fresh

    def run_once(self) -> int:
        """Follow every log once and cross-check unwraps; return the new alert count."""
        fresh = 0
        for verifier in self.verifiers.values():
            fresh += self.follow(Follower(self.state, self.client, verifier))
            fresh += self.check_unwraps(verifier.name)
        for peer in self.config.peers:
            fresh += self.exchange(peer)
        return fresh + self.emit(unpaired_relocations(self.state))

    def exchange(self, peer: str) -> int:
        """Compare a peer monitor's verified checkpoints with every checkpoint seen here.

        Each one must verify with our key for its origin; it is then kept like any other
        checkpoint (proven consistent with the log later), and a different root for a size
        seen here is a split view, with both signed checkpoints as evidence.
        """
        try:
            answer = httpx.get(f"{peer.rstrip('/')}/checkpoints", timeout=10.0)
            rows = answer.json() if answer.status_code == 200 else []
        except (httpx.HTTPError, ValueError):
            rows = []
        alerts: list[Alert] = []
        for row in rows if isinstance(rows, list) else []:
            verifier = self.verifiers.get(str(row.get("origin"))) if isinstance(row, dict) else None
            if verifier is None:
                continue
            try:
                checkpoint, _ = open_checkpoint(str(row.get("checkpoint")), [verifier])
            except (LedgerError, CryptoError):
                LOG.warning(json.dumps({"event": "peer-checkpoint-refused", "peer": peer}))
                continue
            note = str(row["checkpoint"])
            seen = self.state.add_checkpoint(
                checkpoint.origin, checkpoint.size, checkpoint.root_hash, note, f"peer {peer}"
            )
            alerts += [split_view_alert(checkpoint.origin, checkpoint, note, old) for old in seen]
        return self.emit(alerts)

    def follow(self, follower: Follower) -> int:
        """One round on one log."""
        try:
            latest = follower.latest()
        except LedgerError:
            return 0  # unreachable or no checkpoint yet: try again next round
        if isinstance(latest, Alert):
            return self.emit([latest])
        checkpoint, note = latest
        verified = self.state.verified(follower.origin)
        alerts = follower.check_history(checkpoint, note, verified)
        if any(a.kind == "log-truncated" for a in alerts):
            return self.emit(alerts)
        start = verified.frontier if verified else CompactRange()
        if checkpoint.size == start.size:
            return self.emit(alerts)
        return self.emit(alerts + self._verify(follower, checkpoint, note, verified, start))

    def _analyzer(self, origin: str) -> Analyzer:
        analyzer = Analyzer(
            origin, self.replayer, self.config.approved_builds, *self._digests,
            Consistency(origin, self.state), self.shapes,
        )  # fmt: skip
        for policy_hash, _, record in self.state.policy_records(origin):
            self.replayer.add_version(record)
            analyzer.policy_hash = policy_hash  # the newest recorded, until a decision says
        analyzer.replay_ok = self.state.get(f"replay-ok|{origin}", "1") == "1"
        return analyzer

    def _verify(
        self,
        follower: Follower,
        checkpoint: Checkpoint,
        note: str,
        verified: Verified | None,
        start: CompactRange,
    ) -> list[Alert]:
        """Stream the new entries, analyse and store them, then check the signed root.

        Facts are stored chunk by chunk (memory stays flat) but count only below the
        verified size: if the entries do not hash to the signed root, the facts of the
        range are deleted again, and only the rewrite itself is raised.
        """
        origin = follower.origin
        self._forget(origin, start.size)  # left by a round that stopped half way, if any
        analyzer = self._analyzer(origin)
        found: list[Alert] = []
        latest = ""
        stream = follower.stream(start, checkpoint.size)
        try:
            with _gc_paused():
                for first, chunk in stream:
                    analysis = analyzer.run(first, chunk)
                    found += analysis.alerts + self._store(origin, analysis)
                    latest = analysis.latest
        except FetchProblem as exc:
            self._forget(origin, start.size)
            return [_rewritten(origin, checkpoint, note, verified, str(exc))]
        except Unavailable as exc:  # the next round tries again; nothing is concluded
            self._forget(origin, start.size)
            LOG.warning(json.dumps({"event": "log-unavailable", "origin": origin,
                                    "error": str(exc)[:300]}))  # fmt: skip
            return []
        if not hmac.compare_digest(stream.frontier.root(), checkpoint.root_hash):
            self._forget(origin, start.size)
            problem = "the entries served do not hash to the signed root"
            return [_rewritten(origin, checkpoint, note, verified, problem)]
        with self.state.transaction() as db:
            self.state.set_verified(
                db, origin, Verified(checkpoint.size, checkpoint.root_hash, note, stream.frontier)
            )
            db.executemany(
                upsert_sql("kv"),
                [(f"replay-ok|{origin}", "1" if analyzer.replay_ok else "0")]
                + ([(f"latest-time|{origin}", latest)] if latest else []),
            )
            db.execute(
                "UPDATE checkpoints SET consistent = 1 WHERE origin = ? AND size = ? AND root = ?",
                (origin, checkpoint.size, checkpoint.root_hash),
            )
        limits = self.config.thresholds
        return found + threshold_alerts(self.state, origin, start.size, checkpoint.size, limits)

    def _store(self, origin: str, analysis: Analysis) -> list[Alert]:
        """Store a chunk's facts and cross-check rows; a migration batch seen twice alerts."""
        alerts: list[Alert] = []
        rows = analysis.pending.rows
        with self.state.transaction() as db:
            db.executemany(upsert_sql("facts", FACT_COLUMNS.split(", ")), analysis.facts)
            for shape, flat in analysis.shaped.items():
                insert_shaped_facts(db, origin, shape.fact_middle, shape.detail, flat)
            db.executemany(
                "INSERT OR IGNORE INTO policies VALUES (?, ?, ?, ?)",
                [(origin, h, i, r) for h, i, r in analysis.policies],
            )
            for table in ("agreements", "destinations", "erasures", "relocations"):
                if rows.get(table):
                    db.executemany(upsert_sql(table), rows[table])
            for batch in rows.get("batches", []):
                alerts += _batch_once(db, batch)
        return alerts

    def _forget(self, origin: str, first: int) -> None:
        """Drop what was stored for entries from `first` on (they did not verify)."""
        with self.state.transaction() as db:
            for table in ("facts", "policies", *FORGETTABLE):
                db.execute(f"DELETE FROM {table} WHERE origin = ? AND idx >= ?", (origin, first))

    def check_unwraps(self, origin: str) -> int:
        """Match the custodian's unwraps against verified allow decisions."""
        verified = self.state.verified(origin)
        if verified is None:
            return 0
        cursor_name = f"unwraps|{origin}"
        after = int(self.state.get(cursor_name, "0"))
        try:
            records = self.client.unwraps(origin.rsplit("/", 1)[-1], after)
        except LedgerError:
            return 0
        alerts: list[Alert] = []
        for record in records:
            if int(record["ledger_index"]) >= verified.size:
                break  # its decision is not verified yet: look again next round
            problem = self._unwrap_problem(origin, record)
            if problem:
                alerts.append(
                    Alert(
                        "unwrap-without-decision",
                        origin,
                        problem,
                        key=str(record["id"]),
                        evidence={"unwrap": record},
                        index=int(record["ledger_index"]),
                    )
                )
            after = int(record["id"])
        self.state.put(cursor_name, str(after))
        return self.emit(alerts)

    def _export_unwrap_problem(self, origin: str, record: dict[str, object]) -> str:
        """An export's one decision covers many subjects: count them against what was sent."""
        index = record["ledger_index"]
        counter = f"unwrap-count|{origin}|{index}"
        count = int(self.state.get(counter, "0")) + 1
        self.state.put(counter, str(count))
        sent = self.state.query(
            "SELECT detail FROM facts WHERE origin = ? AND kind = 'transfer' AND idx > ?"
            " AND decision_id = ?",
            [origin, index, record["decision_id"]],
        )
        for (detail,) in sent:
            subjects = json.loads(detail or "{}").get("subjects")
            if isinstance(subjects, int) and count > subjects:
                return f"unwrap {record['id']}: more keys unwrapped than subjects exported"
        return ""

    def _unwrap_problem(self, origin: str, record: dict[str, object]) -> str:
        rows = self.state.query(
            "SELECT kind, result, decision_id, subject_ref, action FROM facts"
            " WHERE origin = ? AND idx = ?",
            [origin, record["ledger_index"]],
        )
        if not rows or rows[0][0] != "decision":
            return f"unwrap {record['id']} points at entry {record['ledger_index']}, no decision"
        _, result, decision_id, subject_ref, action = rows[0]
        if result != "allow":
            return f"unwrap {record['id']} follows a denied decision"
        if decision_id != record["decision_id"]:
            return f"unwrap {record['id']} does not match the decision at its index"
        if subject_ref is None and action == "transfer":
            return self._export_unwrap_problem(origin, record)
        if subject_ref != record["subject_ref"]:
            return f"unwrap {record['id']} does not match the decision at its index"
        subject_ref = record["subject_ref"]
        erased = self.state.query(
            "SELECT idx FROM erasures WHERE origin = ? AND subject_ref = ? AND idx < ?",
            [origin, subject_ref, record["ledger_index"]],
        )
        if erased:
            return f"unwrap {record['id']} reaches a subject erased at entry {erased[0][0]}"
        return ""


def _batch_once(db: Connection, batch: tuple[Any, ...]) -> list[Alert]:
    """Store a migration batch; the same (source, batch id) at another entry is an alert."""
    source, batch_id, origin, idx = batch[:4]
    known = db.execute(
        "SELECT origin, idx, root, count FROM batches WHERE source = ? AND batch_id = ?",
        (source, batch_id),
    ).fetchone()
    if known is None:
        db.execute("INSERT INTO batches VALUES (?, ?, ?, ?, ?, ?)", batch)
        return []
    if (known[0], known[1]) == (origin, idx):
        return []
    return [
        Alert(
            "migration-batch-duplicate", origin,
            f"migration batch `{batch_id}` of `{source}` recorded again (first at "
            f"{known[0]} entry {known[1]})",
            f"{source}|{batch_id}|{origin}|{idx}",
            {"first": {"origin": known[0], "index": known[1], "root": known[2],
                       "count": known[3]}, "again": {"root": batch[4], "count": batch[5]}},
            idx,
        )
    ]  # fmt: skip


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while entries stream through.

    Decoded entries are acyclic JSON that reference counting frees, but the thousands
    of containers alive per chunk make the collector run over and over: pausing it
    triples decoding speed (bench/monitor.py). It runs again, and catches up, after.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _rewritten(
    origin: str, checkpoint: Checkpoint, note: str, verified: Verified | None, problem: str
) -> Alert:
    notes = ([verified.note] if verified else []) + [note]
    return Alert(
        "log-rewritten",
        origin,
        problem,
        key=f"{checkpoint.size}|{checkpoint.root_hash!r}",
        evidence={"checkpoints": notes},
    )
