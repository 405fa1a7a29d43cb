"""Alerts: what the monitor raises, as values, and where they go (log, store, webhook)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

LOG = logging.getLogger("domicile.monitor")

KINDS = frozenset(
    {
        "bad-checkpoint",  # a checkpoint whose signature or origin does not verify
        "log-rewritten",  # entries do not hash to the signed root, or signed entries are gone
        "log-forked",  # a checkpoint is not consistent with one seen before
        "log-truncated",  # the log shows fewer entries than it signed before
        "split-view",  # two different roots for one size of one log
        "unknown-build",  # a gateway build digest not in the approved list
        "break-glass",  # an `alert` entry (break glass, or another gateway alert)
        "unwrap-without-decision",  # a custodian unwrap with no matching allow
        "allow-against-policy",  # an allow the recorded policy version denies
        "deny-against-policy",  # a deny the recorded policy version allows
        "policy-not-recorded",  # a decision under a policy hash the log never recorded
        "replay-unavailable",  # the monitor cannot replay (catalog or topology differ)
        "country-of-concern",  # an access attempt from, or by someone in, such a country
        "denied-spike",  # too many denials in one minute
        "bulk-access",  # one principal reached too many subjects in one hour
        "transfer-without-agreement",  # a transfer under an agreement the log never recorded
        "transfer-outside-agreement",  # a transfer the agreement in force does not cover
        "transfer-without-decision",  # a transfer that cites no allow decision
        "erasure-without-decision",  # an erasure that cites no allowed erase of its subject
        "access-after-erasure",  # an allow, transfer or unwrap reaching an erased subject
        "migration-batch-duplicate",  # one migration batch recorded twice
        "relocation-unpaired",  # a subject left a region and arrived in none
    }
)


@dataclass(frozen=True)
class Alert:
    """One alert: its kind, the log it concerns, a message, and evidence to show anyone."""

    kind: str
    origin: str
    message: str
    key: str
    """Deduplication key: the same alert is raised once, however often it is seen."""
    evidence: dict[str, Any] = field(default_factory=dict)
    index: int | None = None
    """The ledger index it points at, when one entry is the cause."""
    severity: str = "critical"

    def record(self) -> dict[str, Any]:
        """Return the alert as a JSON object (what the log line, store and webhook carry)."""
        return {
            "kind": self.kind,
            "origin": self.origin,
            "severity": self.severity,
            "message": self.message,
            "index": self.index,
            "evidence": self.evidence,
        }


Sink = Callable[[dict[str, Any]], None]


def log_line(record: dict[str, Any]) -> None:
    """Write an alert as one structured JSON log line."""
    LOG.warning(json.dumps({"event": "alert", **record}, sort_keys=True))


def webhook_sink(url: str, *, timeout: float = 5.0) -> Sink:
    """Return a sink that POSTs each alert as JSON to `url`; failures are logged, not raised."""

    def send(record: dict[str, Any]) -> None:
        try:
            httpx.post(url, json=record, timeout=timeout)
        except httpx.HTTPError as exc:
            LOG.error(json.dumps({"event": "webhook-failed", "error": str(exc)[:200]}))

    return send


def now() -> str:
    """The current time, RFC 3339 UTC to the second."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
