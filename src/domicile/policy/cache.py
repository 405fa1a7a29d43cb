"""A decision cache keyed on exactly the attributes a decision depends on.

A Cedar decision is a pure function of the snapshot and of the Cedar input: the
principal's attributes, the action, the resource's attributes and the context. The key
is those attributes as a tuple, plus three generations that make entries stale:

* the snapshot's generation — a reload starts a new one (and the cache drops the old);
* the grant generation — :meth:`DecisionCache.invalidate_grants` on any grant change;
* the principal's generation — both the one the principal store puts on
  :class:`~domicile.policy.model.PolicyPrincipal` and the cache's own counter bumped by
  :meth:`DecisionCache.invalidate_principal`.

The snapshot's generation is in the key as well, so a verdict computed by a thread that
read the old snapshot just before a reload can never be served for the new one.

The subject id is never part of the key because it never reaches Cedar: a grant that
covers only some subjects is resolved before the decision into ``grant.covers_subject``
and ``grant.id``, which are in the key. ``context.time`` is in the key only when a policy
of the snapshot reads it; otherwise every request would be a miss.

Each decision returned gets a fresh decision id: the cache keeps verdicts, not decisions.
Generations are read once, before evaluating, so an entry computed while an
invalidation happens lands under the old generation and is never served.
"""

from __future__ import annotations

import threading

from domicile.policy.engine import PolicyEngine, assemble_fields, evaluate, new_decision_id
from domicile.policy.model import (
    CedarRequest,
    FieldDecision,
    PolicyDecision,
    PolicyRequest,
    Verdict,
)
from domicile.policy.snapshot import PolicySnapshot

__all__ = ["DecisionCache"]

_Key = tuple[object, ...]


class DecisionCache:
    """Caches verdicts of a `PolicyEngine`; the same `decide*` methods as the engine."""

    def __init__(self, engine: PolicyEngine, *, max_entries: int = 100_000) -> None:
        """Cache `engine`'s verdicts, at most `max_entries` of them."""
        self.engine = engine
        self.max_entries = max_entries
        self.hits = 0  # approximate under threads: statistics, not accounting
        self.misses = 0
        self._entries: dict[_Key, Verdict] = {}
        self._generation = engine.snapshot.generation
        self._grants = 0
        self._principals: dict[str, int] = {}
        self._lock = threading.Lock()  # only for invalidation; lookups take no lock

    def invalidate_grants(self) -> None:
        """Forget every cached verdict: a grant was requested, approved, revoked or expired."""
        with self._lock:
            self._grants += 1
            self._entries = {}

    def invalidate_principal(self, principal_id: str) -> None:
        """Make cached verdicts of one principal stale: its attributes or roles changed."""
        with self._lock:
            self._principals[principal_id] = self._principals.get(principal_id, 0) + 1

    def clear(self) -> None:
        """Forget every cached verdict."""
        with self._lock:
            self._entries = {}

    def __len__(self) -> int:
        return len(self._entries)

    def _entries_for(self, generation: int) -> dict[_Key, Verdict]:
        """The entry table, emptied first when a reload made every entry stale."""
        if generation != self._generation:
            with self._lock:
                if generation > self._generation:
                    self._generation = generation
                    self._entries = {}
        entries = self._entries
        if len(entries) >= self.max_entries:
            # Clearing beats eviction bookkeeping on the hot path; the table refills
            # at the rate of misses.
            with self._lock:
                self._entries = entries = {}
        return entries

    def _key(self, request: CedarRequest, snapshot: PolicySnapshot, grants: int) -> _Key:
        principal_generation = self._principals.get(request.principal.id, 0)
        return (
            snapshot.generation,
            grants,
            principal_generation,
            request.key(with_time=snapshot.uses_time),
        )

    def decide(self, request: CedarRequest) -> PolicyDecision:
        """Decide one evaluation, from the cache when the same input was decided before."""
        snapshot = self.engine.snapshot
        grants = self._grants
        entries = self._entries_for(snapshot.generation)
        key = self._key(request, snapshot, grants)
        verdict = entries.get(key)
        if verdict is None:
            self.misses += 1
            (verdict,) = evaluate(snapshot, [request])
            entries[key] = verdict
        else:
            self.hits += 1
        return PolicyDecision(new_decision_id(), request, verdict, snapshot.policy_hash)

    def decide_fields(self, request: PolicyRequest) -> FieldDecision:
        """Decide a field-level request; misses are evaluated together in one batch."""
        snapshot = self.engine.snapshot
        grants = self._grants
        entries = self._entries_for(snapshot.generation)
        # The key of each category differs only in the resource: build the rest once.
        # It has the shape of CedarRequest.key (DataResource.key for the resource), so
        # `decide` and `decide_fields` share entries.
        head = (
            snapshot.generation,
            grants,
            self._principals.get(request.principal.id, 0),
        )
        principal_key = request.principal.key()
        context_key = request.context.key(with_time=snapshot.uses_time)
        categories = request.categories()
        verdicts: dict[str, Verdict] = {}
        missing: list[tuple[str, _Key]] = []
        for category in categories:
            resource = ("data", request.home_region, request.home_jurisdiction, category)
            key: _Key = (*head, (principal_key, request.action, resource, context_key))
            verdict = entries.get(key)
            if verdict is None:
                missing.append((category, key))
            else:
                verdicts[category] = verdict
        self.hits += len(verdicts)
        if missing:
            self.misses += len(missing)
            fresh = evaluate(snapshot, [request.for_category(category) for category, _ in missing])
            for (category, key), verdict in zip(missing, fresh, strict=True):
                entries[key] = verdicts[category] = verdict
            verdicts = {category: verdicts[category] for category in categories}
        return assemble_fields(new_decision_id(), request, snapshot.policy_hash, verdicts)
