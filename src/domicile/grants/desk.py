"""The grant desk: requests, approvals, denials and revocations, decided and recorded.

Each step is decided by the policy (action `approve` for approvals, denials and
revocations by others than the requester), checked by the store's structural rules,
and written to the region's ledger as a `grant-step` entry. Subjects appear there
only as keyed references, and justifications only as a SHA-256 digest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import timedelta

from domicile.catalog.catalog import Category
from domicile.errors import AccessDenied, InvalidInput, SubjectNotFound
from domicile.gateway.pipeline import Gateway, is_subject_id
from domicile.gateway.request import AccessRequest, Action, Event
from domicile.grants.store import Grant, GrantStore
from domicile.principals.store import Principal

GRANTABLE = frozenset({Category.RESTRICTED.value, Category.ALLOWABLE.value})
OVERSEERS = frozenset({"approver", "officer"})


class GrantDesk:
    """Where principals ask for, approve and revoke just-in-time access."""

    def __init__(self, gateway: Gateway, store: GrantStore, steps: dict[str, int]) -> None:
        self.gateway = gateway
        self.store = store
        self.steps = steps  # approval steps per category (policy configuration)

    def _event(self, grant: Grant, step: str, by: str) -> Event:
        refs = [self.gateway.subject_ref(grant.region, sid) for sid in grant.subjects]
        return Event(
            "grant-step",
            grant.region,
            {
                "grant_id": grant.id,
                "step": step,
                "by": by,
                "requester": grant.requester,
                "state": grant.state,
                "categories": list(grant.categories),
                "purpose": grant.purpose,
                "subject_refs": refs,
                "steps_required": grant.steps_required,
                "approvals": list(grant.approvals),
                "expires_at": grant.expires_at,
                "justification_sha256": hashlib.sha256(grant.justification.encode()).hexdigest(),
            },
        )

    def request(
        self,
        principal: Principal,
        *,
        region: str,
        subjects: Sequence[str],
        categories: Sequence[str],
        purpose: str,
        justification: str,
        duration: timedelta,
    ) -> Grant:
        """File a request; the steps it needs rise with the most sensitive category."""
        self.gateway.topology.region(region)  # UnknownRegion
        unknown = set(categories) - GRANTABLE
        if unknown:
            raise InvalidInput(f"grants cover only {sorted(GRANTABLE)}, not `{sorted(unknown)[0]}`")
        for sid in subjects:
            if not is_subject_id(sid) or self.gateway.directory.lookup(sid).home_region != region:
                raise SubjectNotFound(f"no subject `{sid[:64]}` in region `{region}`")
        grant = self.store.request(
            requester=principal.id,
            region=region,
            subjects=subjects,
            categories=categories,
            purpose=purpose,
            justification=justification,
            duration=duration,
            steps_required=max(self.steps.get(c, 1) for c in categories) if categories else 1,
        )
        self.gateway.record([self._event(grant, "request", principal.id)])
        return grant

    def _decide_oversight(self, principal: Principal, grant: Grant) -> None:
        fields = frozenset(
            name
            for name, spec in self.gateway.catalog.fields.items()
            if spec.category.value in grant.categories
        )
        request = AccessRequest(
            principal, Action.APPROVE, grant.region, None, fields, grant.purpose
        )
        self.gateway.decide(request)  # recorded; AccessDenied unless the policy allows

    def decide(self, principal: Principal, grant_id: str, verdict: str) -> Grant:
        """Approve or deny one step of a pending request."""
        grant = self.store.get(grant_id)
        if principal.id == grant.requester:
            raise AccessDenied("nobody approves their own request")
        self._decide_oversight(principal, grant)
        grant = self.store.step(grant_id, principal.id, verdict)
        self.gateway.record([self._event(grant, verdict, principal.id)])
        return grant

    def revoke(self, principal: Principal, grant_id: str) -> Grant:
        """Revoke at once: by the requester, or by someone the policy lets oversee it."""
        grant = self.store.get(grant_id)
        if principal.id != grant.requester:
            self._decide_oversight(principal, grant)
        grant = self.store.revoke(grant_id, principal.id)
        self.gateway.record([self._event(grant, "revoke", principal.id)])
        return grant

    def visible(self, principal: Principal, state: str | None) -> list[Grant]:
        """Overseers see every grant; everyone else sees their own."""
        if principal.roles & OVERSEERS:
            return self.store.find(state=state)
        return self.store.find(state=state, requester=principal.id)

    def get(self, principal: Principal, grant_id: str) -> Grant:
        """One grant, if the principal may see it."""
        grant = self.store.get(grant_id)
        if grant.requester != principal.id and not principal.roles & OVERSEERS:
            raise AccessDenied("only the requester and overseers see a grant")
        return grant
