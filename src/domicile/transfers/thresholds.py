"""Bulk-transfer thresholds: distinct subjects sent per destination country and data class.

`ThresholdCounter.check_and_count` counts, over a rolling window (365 days by default),
the distinct subjects whose data of each class went to a destination country, and refuses
a transfer that would take a count past its limit. Check and count happen in one write
transaction that first locks the counters involved (SQLite: `BEGIN IMMEDIATE`;
PostgreSQL: `SELECT … FOR UPDATE` on the counter rows, in sorted order so two transfers
never deadlock), so two concurrent transfers cannot both pass the last free place.

Subjects are stored as keyed references (HMAC-SHA256 under a region key), never as ids:
the table can show how many people were sent, not who.
"""

from __future__ import annotations

import hashlib
import hmac
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from types import MappingProxyType

from domicile.errors import AccessDenied, ConfigError
from domicile.storage.database import Database, Tx
from domicile.storage.migrations import migrate
from domicile.transfers.model import Agreement

__all__ = [
    "REF_DOMAIN",
    "CounterStatus",
    "ThresholdConfig",
    "ThresholdCounter",
    "ThresholdStatus",
    "load_threshold_config",
]

REF_DOMAIN = "domicile.transfer-counter"
"""Pseudonym domain whose key (`PetKeys.pseudonym_key`) makes the counter's subject refs."""
AGREEMENT_CLASS = "subjects"
"""Data class of an agreement's own yearly volume counter (every subject sent)."""

_CHUNK = 500
_REF_LABEL = b"domicile-transfer-ref/v1\x00"


@dataclass(frozen=True)
class ThresholdConfig:
    """Limits per data class, which class each catalog field is in, when to warn."""

    limits: Mapping[str, int]
    field_classes: Mapping[str, str]
    warn_fraction: float = 0.8
    window: timedelta = timedelta(days=365)

    def __post_init__(self) -> None:
        """Refuse limits under 1, a class without a limit, and a fraction outside (0, 1]."""
        if not 0 < self.warn_fraction <= 1:
            raise ConfigError("threshold `warn_fraction` must be in (0, 1]")
        if self.window <= timedelta(0):
            raise ConfigError("threshold window must be positive")
        for name, limit in self.limits.items():
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
                raise ConfigError(f"threshold limit of `{name}` must be a positive integer")
        for name, data_class in self.field_classes.items():
            if data_class not in self.limits:
                raise ConfigError(f"field `{name}` is in class `{data_class}`, which has no limit")

    def classes_for(self, fields: Mapping[str, str]) -> frozenset[str]:
        """Return the data classes of fields sent, given field → transform applied.

        Suppressed fields are not sent. Every other transform counts: the US rule covers
        data "whether anonymized, pseudonymized, de-identified, or encrypted" (§202.222),
        except precise geolocation generalised to a country or a grid cell, which is
        then no longer precise.
        """
        out: set[str] = set()
        for name, transform in fields.items():
            data_class = self.field_classes.get(name)
            if data_class is None or transform == "suppress":
                continue
            if data_class == "precise_geolocation" and transform.startswith("generalise:"):
                continue
            out.add(data_class)
        return frozenset(out)


def parse_threshold_config(document: Mapping[str, object], source: str) -> ThresholdConfig:
    """Build a config from a parsed TOML document; ConfigError naming `source`."""
    limits, fields = document.get("limits"), document.get("fields", {})
    fraction, days = document.get("warn_fraction", 0.8), document.get("window_days", 365)
    if not isinstance(limits, dict) or not isinstance(fields, dict):
        raise ConfigError(f"thresholds `{source}` need `[limits]` and `[fields]` tables")
    if not isinstance(fraction, int | float) or not isinstance(days, int):
        raise ConfigError(f"thresholds `{source}`: bad `warn_fraction` or `window_days`")
    try:
        return ThresholdConfig(
            limits=MappingProxyType(dict(limits)),
            field_classes=MappingProxyType({str(k): str(v) for k, v in fields.items()}),
            warn_fraction=float(fraction),
            window=timedelta(days=days),
        )
    except ConfigError as exc:
        raise ConfigError(f"thresholds `{source}`: {exc}") from exc


def load_threshold_config(path: Path | None = None) -> ThresholdConfig:
    """Read thresholds from `path`, or the built-in defaults if `path` is None."""
    if path is None:
        text = resources.files(__package__ or "domicile.transfers") / "default_thresholds.toml"
        return parse_threshold_config(tomllib.loads(text.read_text("utf-8")), "default")
    try:
        document = tomllib.loads(Path(path).read_text("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read thresholds `{path}`: {exc}") from exc
    return parse_threshold_config(document, str(path))


@dataclass(frozen=True)
class CounterStatus:
    """One counter after a check: subjects counted before, after, and its limit."""

    scope: str
    data_class: str
    limit: int
    before: int
    after: int
    level: str  # "ok", "warning" or "blocked"


@dataclass(frozen=True)
class ThresholdStatus:
    """The outcome of `check_and_count`: counted unless blocked, with any warnings."""

    counters: tuple[CounterStatus, ...]
    counted: bool
    new_subjects: int = 0
    at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def blocked(self) -> tuple[CounterStatus, ...]:
        """Counters the transfer would have taken past their limit."""
        return tuple(c for c in self.counters if c.level == "blocked")

    @property
    def warnings(self) -> tuple[CounterStatus, ...]:
        """Counters at or past the warning fraction of their limit."""
        return tuple(c for c in self.counters if c.level == "warning")

    def verify_allowed(self) -> None:
        """Raise AccessDenied if the transfer was blocked."""
        if self.blocked:
            first = self.blocked[0]
            raise AccessDenied(
                f"bulk threshold reached: `{first.data_class}` to `{first.scope}` would be "
                f"{first.after} subjects in the window, over the limit of {first.limit}"
            )

    def ledger_record(self) -> dict[str, object]:
        """Return counts only, for a ledger event (warning or block)."""
        return {
            "counted": self.counted,
            "new_subjects": self.new_subjects,
            "at": self.at.isoformat(),
            "counters": [c.__dict__ for c in self.counters],
        }


def _level(after: int, limit: int, warn_fraction: float) -> str:
    if after > limit:
        return "blocked"
    return "warning" if after >= warn_fraction * limit else "ok"


class ThresholdCounter:
    """Rolling counts of distinct subjects transferred, per scope and data class."""

    def __init__(self, db: Database, ref_key: bytes, config: ThresholdConfig) -> None:
        """Count in `db`; `ref_key` (32 bytes, from the home region) keys subject refs."""
        if len(ref_key) < 32:
            raise ConfigError("the transfer counter key is shorter than 32 bytes")
        self.db = db
        self.config = config
        self._ref_key = bytes(ref_key)
        migrate(db, "transfers", "domicile.transfers")

    def subject_ref(self, subject_id: str) -> str:
        """Return the keyed reference stored in place of a subject id."""
        mac = hmac.digest(self._ref_key, _REF_LABEL + subject_id.encode(), hashlib.sha256)
        return mac[:16].hex()

    def _scopes(
        self, country: str, fields: Mapping[str, str], agreement: Agreement | None
    ) -> list[tuple[str, str, int]]:
        scopes = [
            (f"country:{country}", data_class, self.config.limits[data_class])
            for data_class in self.config.classes_for(fields)
        ]
        if agreement is not None and agreement.max_subjects_per_year is not None:
            sent = {k: v for k, v in fields.items() if v != "suppress"}
            if sent:
                scopes.append(
                    (f"agreement:{agreement.id}", AGREEMENT_CLASS, agreement.max_subjects_per_year)
                )
        return sorted(scopes)

    def check_and_count(
        self,
        *,
        destination_country: str,
        fields: Mapping[str, str],
        subject_ids: Iterable[str],
        at: datetime | None = None,
        agreement: Agreement | None = None,
    ) -> ThresholdStatus:
        """Count these subjects unless that takes a counter past its limit; atomic.

        `fields` maps each field sent to the transform it was sent with. Nothing is
        counted when any counter would block (the transfer must then not happen):
        call `verify_allowed()` on the result, and log its warnings.
        """
        moment = (at or datetime.now(UTC)).astimezone(UTC)
        scopes = self._scopes(destination_country, fields, agreement)
        refs = sorted({self.subject_ref(s) for s in subject_ids})
        if not scopes or not refs:
            return ThresholdStatus(counters=(), counted=True, at=moment)
        now_s = int(moment.timestamp())
        cutoff = int((moment - self.config.window).timestamp())
        with self.db.transaction() as tx:
            self._lock(tx, scopes)
            counters, fresh = self._measure(tx, scopes, refs, cutoff)
            if any(c.level == "blocked" for c in counters):
                return ThresholdStatus(counters=tuple(counters), counted=False, at=moment)
            self._record(tx, scopes, refs, now_s)
        new = max((len(f) for f in fresh), default=0)
        return ThresholdStatus(counters=tuple(counters), counted=True, new_subjects=new, at=moment)

    def _lock(self, tx: Tx, scopes: Sequence[tuple[str, str, int]]) -> None:
        """Make sure each counter row exists, then lock them in sorted order."""
        for scope, data_class, _ in scopes:
            tx.execute(
                "INSERT INTO transfer_counters (scope, data_class) VALUES (?, ?)"
                " ON CONFLICT (scope, data_class) DO NOTHING",
                (scope, data_class),
            )
        if self.db.dialect == "postgres":  # SQLite's BEGIN IMMEDIATE already serialises
            for scope, data_class, _ in scopes:
                tx.execute(
                    "SELECT 1 FROM transfer_counters WHERE scope = ? AND data_class = ? FOR UPDATE",
                    (scope, data_class),
                )

    def _measure(
        self, tx: Tx, scopes: Sequence[tuple[str, str, int]], refs: Sequence[str], cutoff: int
    ) -> tuple[list[CounterStatus], list[set[str]]]:
        counters: list[CounterStatus] = []
        fresh_per_scope: list[set[str]] = []
        for scope, data_class, limit in scopes:
            before = int(
                tx.execute(
                    "SELECT COUNT(*) FROM transfer_subjects"
                    " WHERE scope = ? AND data_class = ? AND last_at > ?",
                    (scope, data_class, cutoff),
                ).fetchone()[0]
            )
            seen: set[str] = set()
            for start in range(0, len(refs), _CHUNK):
                chunk = refs[start : start + _CHUNK]
                marks = ", ".join("?" * len(chunk))
                rows = tx.execute(
                    "SELECT subject_ref FROM transfer_subjects WHERE scope = ? AND data_class = ?"
                    f" AND last_at > ? AND subject_ref IN ({marks})",
                    (scope, data_class, cutoff, *chunk),
                ).fetchall()
                seen.update(str(r[0]) for r in rows)
            fresh = set(refs) - seen
            after = before + len(fresh)
            level = _level(after, limit, self.config.warn_fraction)
            counters.append(CounterStatus(scope, data_class, limit, before, after, level))
            fresh_per_scope.append(fresh)
        return counters, fresh_per_scope

    def _record(
        self, tx: Tx, scopes: Sequence[tuple[str, str, int]], refs: Sequence[str], now_s: int
    ) -> None:
        rows = [(scope, data_class, ref, now_s) for scope, data_class, _ in scopes for ref in refs]
        tx.executemany(
            "INSERT INTO transfer_subjects (scope, data_class, subject_ref, last_at)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (scope, data_class, subject_ref)"
            " DO UPDATE SET last_at = excluded.last_at"
            " WHERE excluded.last_at > transfer_subjects.last_at",
            rows,
        )

    def count(self, scope: str, data_class: str, at: datetime | None = None) -> int:
        """Return distinct subjects counted for `scope` and `data_class` in the window."""
        moment = (at or datetime.now(UTC)).astimezone(UTC)
        cutoff = int((moment - self.config.window).timestamp())
        rows = self.db.query(
            "SELECT COUNT(*) FROM transfer_subjects"
            " WHERE scope = ? AND data_class = ? AND last_at > ?",
            (scope, data_class, cutoff),
        )
        return int(rows[0][0])

    def prune(self, at: datetime | None = None) -> int:
        """Delete refs last sent before the window; return how many went."""
        moment = (at or datetime.now(UTC)).astimezone(UTC)
        cutoff = int((moment - self.config.window).timestamp())
        with self.db.transaction() as tx:
            cursor = tx.execute("DELETE FROM transfer_subjects WHERE last_at <= ?", (cutoff,))
            return int(cursor.rowcount)
