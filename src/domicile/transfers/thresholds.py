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

import time
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from types import MappingProxyType

from domicile.errors import AccessDenied, ConfigError
from domicile.pets.keyed import KeyedMac
from domicile.storage.database import Database, Tx
from domicile.storage.migrations import migrate
from domicile.transfers.model import Agreement

__all__ = [
    "REF_DOMAIN",
    "CounterStatus",
    "SubjectRefs",
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
_LOOKUP = 5000  # refs per SQLite query for those already counted (under its parameter limit)
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


class _Blocked(Exception):
    """Raised inside the counting transaction to roll it back (nothing is counted)."""


@dataclass
class _Counter:
    """One counter while a transaction holds its lock: the running total and the tally."""

    scope: str
    data_class: str
    limit: int
    total: int  # subjects with last_at > expired_through (the stored running count)
    expired_through: int
    before: int = 0  # subjects in this check's window before it
    fresh: int = 0  # subjects of this check not in the window before it


PRUNE_EVERY = 3600.0
"""Seconds between prunes of `transfer_subjects` (the first after start comes at once)."""
PRUNE_MARGIN = timedelta(days=1)


class SubjectRefs:
    """A counter's keyed subject reference as a callable; it pickles as its key, so an
    export's worker processes compute the refs of the subjects they transform."""

    __slots__ = ("_key", "_mac")

    def __init__(self, key: bytes) -> None:
        """Key the references."""
        self._key = bytes(key)
        self._mac = KeyedMac(self._key, _REF_LABEL)

    def __call__(self, subject_id: str) -> str:
        """Return the keyed reference stored in place of `subject_id` (32 hex digits)."""
        return self._mac.digest(subject_id.encode())[:16].hex()

    def __reduce__(self) -> tuple[type[SubjectRefs], tuple[bytes]]:
        return (SubjectRefs, (self._key,))


class ThresholdCounter:
    """Rolling counts of distinct subjects transferred, per scope and data class.

    Storage: one row per (scope, class, subject ref) with the second it was last sent
    (`transfer_subjects`); per counter a running `total` of the refs last sent after
    `expired_through`; and per counter and second the number of refs last sent in that
    second (`transfer_buckets`). A check first expires the buckets that left the window
    (subtracting them from the total, each bucket once), so the count before a transfer
    is read from the counter row, not counted over the table: the work is proportional
    to the subjects of the transfer and the buckets that expired, never to the table.
    Per-second buckets keep the window exact to the second, as a plain COUNT over
    `last_at` would be, and a bucket row exists only for a second in which some subject
    was last sent, so there are never more bucket rows than subject rows.
    """

    def __init__(self, db: Database, ref_key: bytes, config: ThresholdConfig) -> None:
        """Count in `db` (the counters' own database, see `domicile.transfers.counts`);
        `ref_key` (32 bytes, from the home region) keys subject refs."""
        if len(ref_key) < 32:
            raise ConfigError("the transfer counter key is shorter than 32 bytes")
        self.db = db
        self.config = config
        self.refs = SubjectRefs(ref_key)
        self._pruned_at: float | None = None
        migrate(db, "thresholds", "domicile.transfers.counts")

    def subject_ref(self, subject_id: str) -> str:
        """Return the keyed reference stored in place of a subject id."""
        return self.refs(subject_id)

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
        refs = sorted({self.subject_ref(s) for s in subject_ids})
        chunks = [refs[i : i + _CHUNK] for i in range(0, len(refs), _CHUNK)]
        return self.check_and_count_refs(
            destination_country=destination_country, fields=fields, ref_chunks=chunks,
            at=at, agreement=agreement,
        )  # fmt: skip

    def check_and_count_refs(
        self,
        *,
        destination_country: str,
        fields: Mapping[str, str],
        ref_chunks: Iterable[Sequence[str]],
        at: datetime | None = None,
        agreement: Agreement | None = None,
    ) -> ThresholdStatus:
        """`check_and_count` for refs (`subject_ref`) that arrive in chunks: constant memory.

        The chunks are read inside one write transaction, which is rolled back if a
        counter would block. A ref may repeat across chunks (it counts once).
        """
        moment = (at or datetime.now(UTC)).astimezone(UTC)
        scopes = self._scopes(destination_country, fields, agreement)
        if not scopes:
            return ThresholdStatus(counters=(), counted=True, at=moment)
        now_s = int(moment.timestamp())
        cutoff = int((moment - self.config.window).timestamp())
        try:
            with self.db.transaction() as tx:
                counters = self._open(tx, scopes, cutoff)
                seen_any = False
                for chunk in ref_chunks:
                    refs = sorted(set(chunk))
                    seen_any = seen_any or bool(refs)
                    for counter in counters:
                        self._add(tx, self.db.dialect, counter, refs, now_s, cutoff)
                statuses = self._statuses(counters)
                if any(c.level == "blocked" for c in statuses):
                    raise _Blocked
                for counter in counters:
                    tx.execute(
                        "UPDATE transfer_counters SET total = ?, expired_through = ?"
                        " WHERE scope = ? AND data_class = ?",
                        (counter.total, counter.expired_through, counter.scope,
                         counter.data_class),
                    )  # fmt: skip
        except _Blocked:
            return ThresholdStatus(counters=tuple(statuses), counted=False, at=moment)
        if not seen_any:
            return ThresholdStatus(counters=(), counted=True, at=moment)
        new = max((c.fresh for c in counters), default=0)
        self._maybe_prune()
        return ThresholdStatus(counters=tuple(statuses), counted=True, new_subjects=new, at=moment)

    def _maybe_prune(self) -> None:
        """Drop refs that left the window, at most once per PRUNE_EVERY seconds.

        The cutoff is a day behind the wall clock's window, so a check that arrives with
        a somewhat older time (clock skew) still finds every ref it should count.
        """
        now = time.monotonic()
        if self._pruned_at is not None and now - self._pruned_at < PRUNE_EVERY:
            return
        self._pruned_at = now
        self.prune(datetime.now(UTC) - PRUNE_MARGIN)

    def _statuses(self, counters: Sequence[_Counter]) -> list[CounterStatus]:
        out = []
        for c in counters:
            after = c.before + c.fresh
            level = _level(after, c.limit, self.config.warn_fraction)
            out.append(CounterStatus(c.scope, c.data_class, c.limit, c.before, after, level))
        return out

    def _open(self, tx: Tx, scopes: Sequence[tuple[str, str, int]], cutoff: int) -> list[_Counter]:
        """Create, lock (sorted order) and read the counters, expiring what left the window."""
        lock = " FOR UPDATE" if self.db.dialect == "postgres" else ""  # SQLite: BEGIN IMMEDIATE
        counters = []
        for scope, data_class, limit in scopes:
            tx.execute(
                "INSERT INTO transfer_counters (scope, data_class) VALUES (?, ?)"
                " ON CONFLICT (scope, data_class) DO NOTHING",
                (scope, data_class),
            )
            row = tx.execute(
                "SELECT total, expired_through FROM transfer_counters"
                f" WHERE scope = ? AND data_class = ?{lock}",
                (scope, data_class),
            ).fetchone()
            counter = _Counter(scope, data_class, limit, int(row[0]), int(row[1]))
            self._expire(tx, counter, cutoff)
            counter.before = counter.total
            if cutoff < counter.expired_through:
                # A moment older than an earlier check (clocks of two gateways): count
                # the refs between its cutoff and what was expired, which still exist.
                counter.before += int(
                    tx.execute(
                        "SELECT COUNT(*) FROM transfer_subjects WHERE scope = ?"
                        " AND data_class = ? AND last_at > ? AND last_at <= ?",
                        (scope, data_class, cutoff, counter.expired_through),
                    ).fetchone()[0]
                )
            counters.append(counter)
        return counters

    @staticmethod
    def _expire(tx: Tx, counter: _Counter, cutoff: int) -> None:
        """Subtract the buckets at or before `cutoff` from the total, once each."""
        if cutoff <= counter.expired_through:
            return
        key = (counter.scope, counter.data_class, cutoff)
        gone = tx.execute(
            "SELECT COALESCE(SUM(subjects), 0) FROM transfer_buckets"
            " WHERE scope = ? AND data_class = ? AND at_s <= ?",
            key,
        ).fetchone()[0]
        if gone:
            tx.execute(
                "DELETE FROM transfer_buckets WHERE scope = ? AND data_class = ? AND at_s <= ?",
                key,
            )
        counter.total -= int(gone)
        counter.expired_through = cutoff

    @staticmethod
    def _add(
        tx: Tx, dialect: str, counter: _Counter, refs: Sequence[str], now_s: int, cutoff: int
    ) -> None:
        """Tally and record one chunk of distinct refs (sorted) for one counter."""
        existing = _counted_before(tx, dialect, counter, refs)
        live_after = counter.expired_through
        scope, data_class = counter.scope, counter.data_class
        # Never sent before (most refs of a large export): new in the window, and in the
        # total and the current second's bucket unless that second is already expired.
        unseen = [ref for ref in refs if ref not in existing]
        counter.fresh += len(unseen)
        rows = [(scope, data_class, ref, now_s) for ref in unseen]
        again: list[tuple[int, str, str, str]] = []  # refs counted before, at an earlier second
        moves: dict[int, int] = {}  # bucket second -> change in its subject count
        if unseen and now_s > live_after:
            counter.total += len(unseen)
            moves[now_s] = len(unseen)
        for ref, old in existing.items():
            if old <= cutoff:
                counter.fresh += 1
            if now_s <= old:
                continue  # already counted at this second or later
            if old > live_after:  # already in the total: move it to the current bucket
                moves[old] = moves.get(old, 0) - 1
                moves[now_s] = moves.get(now_s, 0) + 1
            elif now_s > live_after:  # joins the total
                counter.total += 1
                moves[now_s] = moves.get(now_s, 0) + 1
            again.append((now_s, scope, data_class, ref))
        if rows:
            tx.executemany(
                "INSERT INTO transfer_subjects (scope, data_class, subject_ref, last_at)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (scope, data_class, subject_ref)"
                " DO UPDATE SET last_at = excluded.last_at",
                rows,
            )
        if again:  # a plain update: an upsert would try each as an insert first
            tx.executemany(
                "UPDATE transfer_subjects SET last_at = ?"
                " WHERE scope = ? AND data_class = ? AND subject_ref = ?",
                again,
            )
        _move_buckets(tx, counter, moves)

    def totals(self) -> list[tuple[str, str, int]]:
        """Each counter's running total of distinct subjects, by (scope, data class): what
        the next check starts from, before it expires what left the window (a metric)."""
        rows = self.db.query(
            "SELECT scope, data_class, total FROM transfer_counters ORDER BY scope, data_class"
        )
        return [(str(scope), str(data_class), int(total)) for scope, data_class, total in rows]

    def count(self, scope: str, data_class: str, at: datetime | None = None) -> int:
        """Return distinct subjects counted for `scope` and `data_class` in the window.

        A report (it counts over the table); transfers read the running total.
        """
        moment = (at or datetime.now(UTC)).astimezone(UTC)
        cutoff = int((moment - self.config.window).timestamp())
        rows = self.db.query(
            "SELECT COUNT(*) FROM transfer_subjects"
            " WHERE scope = ? AND data_class = ? AND last_at > ?",
            (scope, data_class, cutoff),
        )
        return int(rows[0][0])

    def prune(self, at: datetime | None = None) -> int:
        """Delete refs last sent before the window; return how many went.

        Every counter is expired up to the same cutoff first, so its running total
        never includes a ref that is no longer stored.
        """
        moment = (at or datetime.now(UTC)).astimezone(UTC)
        cutoff = int((moment - self.config.window).timestamp())
        lock = " FOR UPDATE" if self.db.dialect == "postgres" else ""
        with self.db.transaction() as tx:
            rows = tx.execute(
                "SELECT scope, data_class, total, expired_through FROM transfer_counters"
                f" ORDER BY scope, data_class{lock}"
            ).fetchall()
            for row in rows:
                counter = _Counter(str(row[0]), str(row[1]), 0, int(row[2]), int(row[3]))
                self._expire(tx, counter, cutoff)
                tx.execute(
                    "UPDATE transfer_counters SET total = ?, expired_through = ?"
                    " WHERE scope = ? AND data_class = ?",
                    (counter.total, counter.expired_through, counter.scope, counter.data_class),
                )
            cursor = tx.execute("DELETE FROM transfer_subjects WHERE last_at <= ?", (cutoff,))
            return int(cursor.rowcount)


def _counted_before(tx: Tx, dialect: str, counter: _Counter, refs: Sequence[str]) -> dict[str, int]:
    """The last time each of `refs` that this counter holds was counted."""
    if dialect == "postgres":
        # One array parameter joined to the primary key. An `IN (…)` or `= ANY(…)` list,
        # once psycopg has prepared the statement and PostgreSQL has gone over to a
        # generic plan, is planned as a scan of the window index that filters every
        # ref of the scope: seconds per chunk instead of milliseconds.
        rows = tx.execute(
            "SELECT s.subject_ref, s.last_at FROM unnest(?::text[]) AS r (ref)"
            " JOIN transfer_subjects s ON s.scope = ? AND s.data_class = ?"
            " AND s.subject_ref = r.ref",
            (list(refs), counter.scope, counter.data_class),
        ).fetchall()
        return {str(r[0]): int(r[1]) for r in rows}
    out: dict[str, int] = {}
    for start in range(0, len(refs), _LOOKUP):
        part = refs[start : start + _LOOKUP]
        marks = ", ".join("?" * len(part))
        for r in tx.execute(
            "SELECT subject_ref, last_at FROM transfer_subjects WHERE scope = ?"
            f" AND data_class = ? AND subject_ref IN ({marks})",
            (counter.scope, counter.data_class, *part),
        ).fetchall():
            out[str(r[0])] = int(r[1])
    return out


def _move_buckets(tx: Tx, counter: _Counter, moves: Mapping[int, int]) -> None:
    changed = [(counter.scope, counter.data_class, at_s, n) for at_s, n in moves.items() if n]
    if not changed:
        return
    tx.executemany(
        "INSERT INTO transfer_buckets (scope, data_class, at_s, subjects) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (scope, data_class, at_s)"
        " DO UPDATE SET subjects = transfer_buckets.subjects + excluded.subjects",
        changed,
    )
    emptied = [row[:3] for row in changed if row[3] < 0]
    if emptied:
        tx.executemany(
            "DELETE FROM transfer_buckets WHERE scope = ? AND data_class = ? AND at_s = ?"
            " AND subjects <= 0",
            emptied,
        )
