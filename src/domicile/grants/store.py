"""Grants in the control database: requested, approved in N steps, expired or revoked.

The store enforces the structural rules that no policy may relax: nobody approves
their own request, nobody approves the same request twice, only pending requests
take steps, a grant is active only between its final approval and its expiry, and
revocation takes effect at once. Whether a principal may approve at all is for the
policy to decide (action `approve`), before the store is called.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from domicile.errors import AccessDenied, Conflict, GrantNotFound, InvalidInput
from domicile.policy.model import NO_GRANT, GrantState
from domicile.storage.database import Database, Tx
from domicile.storage.migrations import migrate

MAX_DURATION = timedelta(days=30)
_GRANT_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class Grant:
    """A request for access and where it stands."""

    id: str
    requester: str
    region: str
    subjects: tuple[str, ...]  # empty: every subject of the region (a scope grant)
    categories: tuple[str, ...]
    purpose: str
    justification: str
    duration_seconds: int
    steps_required: int
    state: str
    created_at: str
    approved_at: str | None
    expires_at: str | None
    closed_at: str | None
    closed_by: str | None
    approvals: tuple[str, ...] = ()

    def is_active(self, now: datetime) -> bool:
        """Approved, not revoked, and not yet expired at `now`."""
        return (
            self.state == "approved"
            and self.expires_at is not None
            and now < datetime.fromisoformat(self.expires_at)
        )

    def is_expired(self, now: datetime) -> bool:
        """Approved once, and past its expiry at `now`."""
        return self.state == "approved" and not self.is_active(now)

    def covers(self, subject_id: str | None) -> bool:
        """True if the grant reaches this subject (scope grants reach every one)."""
        return not self.subjects or (subject_id is not None and subject_id in self.subjects)


_COLUMNS = (
    "id, requester, region, subjects, categories, purpose, justification, duration_seconds,"
    " steps_required, state, created_at, approved_at, expires_at, closed_at, closed_by"
)


def grant_state(grants: Sequence[Grant], now: datetime | None = None) -> GrantState:
    """What the policy sees of the grants that reach a request: an active one if any,
    else the newest revoked or expired one (so the decision log says why), else none."""
    if not grants:
        return NO_GRANT
    moment = now or _now()
    active = [g for g in grants if g.is_active(moment)]
    chosen = active[0] if active else (grants[0] if grants else None)
    if chosen is None:
        return NO_GRANT
    return GrantState(
        id=chosen.id,
        approved=chosen.state in {"approved", "revoked"} and chosen.approved_at is not None,
        expired=chosen.is_expired(moment),
        revoked=chosen.state == "revoked",
        purpose=chosen.purpose,
        categories=frozenset(chosen.categories),
        covers_subject=True,  # `relevant` returns only grants that reach the subject
    )


def _now() -> datetime:
    return datetime.now(UTC)


def _split(text: str) -> tuple[str, ...]:
    return tuple(x for x in text.split(",") if x)


class GrantStore:
    """Grants and their approval steps."""

    def __init__(self, db: Database) -> None:
        self.db = db
        migrate(db, "grants", "domicile.grants")

    def request(
        self,
        *,
        requester: str,
        region: str,
        subjects: Sequence[str],
        categories: Sequence[str],
        purpose: str,
        justification: str,
        duration: timedelta,
        steps_required: int,
    ) -> Grant:
        """File a pending request."""
        if not justification.strip():
            raise InvalidInput("a grant request needs a `justification`")
        if not categories:
            raise InvalidInput("a grant request names at least one category")
        if not timedelta(minutes=1) <= duration <= MAX_DURATION:
            raise InvalidInput(f"a grant lasts between one minute and {MAX_DURATION.days} days")
        grant_id = uuid.uuid4().hex
        with self.db.transaction() as tx:
            tx.execute(
                f"INSERT INTO grants ({_COLUMNS}) VALUES"
                " (?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, NULL, NULL, NULL, NULL)",
                (
                    grant_id,
                    requester,
                    region,
                    ",".join(sorted(set(subjects))),
                    ",".join(sorted(set(categories))),
                    purpose,
                    justification.strip(),
                    int(duration.total_seconds()),
                    max(1, steps_required),
                    _now().isoformat(),
                ),
            )
        return self.get(grant_id)

    def _get(self, tx: Tx, grant_id: str, lock: str = "") -> Grant:
        if not _GRANT_ID.match(grant_id):
            raise GrantNotFound(f"no grant `{grant_id[:64]}`")
        row = tx.execute(
            f"SELECT {_COLUMNS} FROM grants WHERE id = ?{lock}", (grant_id,)
        ).fetchone()
        if row is None:
            raise GrantNotFound(f"no grant `{grant_id}`")
        approvals = tx.execute(
            "SELECT approver FROM grant_steps WHERE grant_id = ? AND verdict = 'approve'"
            " ORDER BY at",
            (grant_id,),
        ).fetchall()
        return Grant(
            str(row[0]), str(row[1]), str(row[2]), _split(str(row[3])), _split(str(row[4])),
            str(row[5]), str(row[6]), int(row[7]), int(row[8]), str(row[9]), str(row[10]),
            row[11], row[12], row[13], row[14], tuple(str(a[0]) for a in approvals),
        )  # fmt: skip

    def get(self, grant_id: str) -> Grant:
        """A grant by id."""
        with self.db.transaction(write=False) as tx:
            return self._get(tx, grant_id)

    def find(self, *, state: str | None = None, requester: str | None = None) -> list[Grant]:
        """Grants, newest first, optionally filtered."""
        clauses, params = [], []
        if state is not None:
            clauses.append("state = ?")
            params.append(state)
        if requester is not None:
            clauses.append("requester = ?")
            params.append(requester)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with self.db.transaction(write=False) as tx:
            ids = tx.execute(
                f"SELECT id FROM grants{where} ORDER BY created_at DESC LIMIT 1000", tuple(params)
            ).fetchall()
            return [self._get(tx, str(r[0])) for r in ids]

    def step(self, grant_id: str, approver: str, verdict: str) -> Grant:
        """Record one approval or denial; the last required approval starts the clock."""
        lock = " FOR UPDATE" if self.db.dialect == "postgres" else ""
        now = _now()
        with self.db.transaction() as tx:
            grant = self._get(tx, grant_id, lock)
            if grant.state != "pending":
                raise Conflict(f"grant `{grant_id}` is {grant.state}, not pending")
            if approver == grant.requester:
                raise AccessDenied("nobody approves their own request")
            seen = tx.execute(
                "SELECT 1 FROM grant_steps WHERE grant_id = ? AND approver = ?",
                (grant_id, approver),
            ).fetchone()
            if seen is not None:
                raise Conflict(f"principal `{approver}` already decided on grant `{grant_id}`")
            tx.execute(
                "INSERT INTO grant_steps (grant_id, approver, verdict, at) VALUES (?, ?, ?, ?)",
                (grant_id, approver, verdict, now.isoformat()),
            )
            if verdict == "deny":
                tx.execute(
                    "UPDATE grants SET state = 'denied', closed_at = ?, closed_by = ? WHERE id = ?",
                    (now.isoformat(), approver, grant_id),
                )
            elif len(grant.approvals) + 1 >= grant.steps_required:
                expires = now + timedelta(seconds=grant.duration_seconds)
                tx.execute(
                    "UPDATE grants SET state = 'approved', approved_at = ?, expires_at = ?"
                    " WHERE id = ?",
                    (now.isoformat(), expires.isoformat(), grant_id),
                )
            return self._get(tx, grant_id)

    def revoke(self, grant_id: str, by: str) -> Grant:
        """Revoke a pending or approved grant; it stops covering anything at once."""
        with self.db.transaction() as tx:
            grant = self._get(tx, grant_id)
            if grant.state not in {"pending", "approved"}:
                raise Conflict(f"grant `{grant_id}` is {grant.state}")
            tx.execute(
                "UPDATE grants SET state = 'revoked', closed_at = ?, closed_by = ? WHERE id = ?",
                (_now().isoformat(), by, grant_id),
            )
            return self._get(tx, grant_id)

    def relevant(
        self,
        requester: str,
        region: str,
        subject_id: str | None,
        purpose: str | None,
        *,
        any_subject: bool = False,
    ) -> list[Grant]:
        """Approved or revoked grants of `requester` in `region` that reach this subject
        (or, with `any_subject`, every such grant whatever subjects it names)."""
        rows = self.db.query(
            "SELECT id FROM grants WHERE requester = ? AND region = ?"
            " AND state IN ('approved', 'revoked') AND purpose = ?"
            " ORDER BY created_at DESC LIMIT 50",
            (requester, region, purpose or ""),
        )
        if not rows:  # the common case: no grant at all, one statement
            return []
        with self.db.transaction(write=False) as tx:
            grants = [self._get(tx, str(r[0])) for r in rows]
        return grants if any_subject else [g for g in grants if g.covers(subject_id)]
