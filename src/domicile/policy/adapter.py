"""The gateway's side of the policy engine: from an AccessRequest to a decision.

This is the one module of ``domicile.policy`` that knows the gateway's types; the rest
is pure, so the independent monitor can import it to replay decisions.

* :func:`to_policy_request` turns an :class:`~domicile.gateway.request.AccessRequest`
  into a field-level :class:`~domicile.policy.model.PolicyRequest`, resolving
  jurisdictions and regions through the topology and categories through the catalog.
* :func:`to_admin_request` does the same for `administer`, whose resource is a setting.
* :class:`CedarDecider` keeps the gateway's ``Decider`` shape (``decide(request) ->
  Decision``) on top of an engine and a cache.

Purposes: the API asks reads and exports for a purpose. Register, write, erase and
relocate carry none yet; they are decided with the purpose ``service``
(:data:`IMPLICIT_PURPOSE`), the purpose of an application running its own data.
"""

from __future__ import annotations

import time as _time
from collections.abc import Mapping
from dataclasses import replace
from types import MappingProxyType

from domicile.catalog.catalog import Catalog
from domicile.gateway.request import AccessRequest, Action, Decision
from domicile.policy.cache import DecisionCache
from domicile.policy.engine import PolicyEngine, new_decision_id
from domicile.policy.model import (
    NO_GRANT,
    CedarRequest,
    FieldDecision,
    GrantState,
    PolicyContext,
    PolicyDecision,
    PolicyPrincipal,
    PolicyRequest,
    SettingResource,
)
from domicile.policy.places import locate
from domicile.principals.store import Principal
from domicile.residency.topology import Topology

__all__ = [
    "IMPLICIT_PURPOSE",
    "CedarDecider",
    "principal_attributes",
    "to_admin_request",
    "to_decision",
    "to_policy_request",
]

_FRONT_ENTRIES = 100_000

IMPLICIT_PURPOSE = "service"
"""The purpose of actions whose API does not ask for one (register, write, erase, relocate)."""

_IMPLICIT_PURPOSE_ACTIONS = frozenset(
    {Action.REGISTER, Action.WRITE, Action.ERASE, Action.RELOCATE, Action.ADMINISTER}
)


def principal_attributes(
    principal: Principal, topology: Topology, *, generation: int = 0
) -> PolicyPrincipal:
    """Return the principal's decision attributes; jurisdiction and region from its country."""
    country, jurisdiction, region = locate(topology, principal.country)
    return PolicyPrincipal(
        principal.id,
        principal.entity,
        country,
        jurisdiction,
        region,
        frozenset(principal.roles),
        generation,
    )


def _context(
    request: AccessRequest,
    topology: Topology,
    *,
    source_country: str | None,
    grant: GrantState,
    break_glass: bool,
    transfer_agreement: str,
    transforms_applied: bool,
    destination_country: str = "",
    now: int | None,
) -> PolicyContext:
    purpose = request.purpose
    if purpose is None and request.action in _IMPLICIT_PURPOSE_ACTIONS:
        purpose = IMPLICIT_PURPOSE
    # Without a measured source country the request counts as coming from the
    # principal's country of work: a stated one can only narrow, never widen access.
    source, jurisdiction, region = locate(topology, source_country or request.principal.country)
    return PolicyContext(
        purpose=purpose or "",
        source_country=source,
        source_jurisdiction=jurisdiction,
        source_region=region,
        grant=grant,
        break_glass=break_glass,
        transfer_agreement=transfer_agreement,
        transforms_applied=transforms_applied,
        destination_country=destination_country,
        time=int(_time.time()) if now is None else now,
    )


def to_policy_request(
    request: AccessRequest,
    topology: Topology,
    catalog: Catalog,
    *,
    grant: GrantState = NO_GRANT,
    source_country: str | None = None,
    break_glass: bool = False,
    transfer_agreement: str = "",
    transforms_applied: bool = False,
    destination_country: str = "",
    now: int | None = None,
    principal_generation: int = 0,
) -> PolicyRequest:
    """Return the field-level policy request of a subject-data AccessRequest.

    A request that names no field (register, erase, relocate) touches the whole record,
    so it is decided over every field of the catalog. Raises UnknownRegion for a region
    the topology does not have and UnknownField for a field the catalog does not have.
    """
    names = request.fields or frozenset(catalog.fields)
    fields = {name: catalog.field(name).category.value for name in sorted(names)}
    return PolicyRequest(
        principal=principal_attributes(
            request.principal, topology, generation=principal_generation
        ),
        action=request.action.value,
        home_region=request.region,
        home_jurisdiction=topology.region(request.region).jurisdiction,
        fields=MappingProxyType(fields),
        context=_context(
            request,
            topology,
            source_country=source_country,
            grant=grant,
            break_glass=break_glass,
            transfer_agreement=transfer_agreement,
            transforms_applied=transforms_applied,
            destination_country=destination_country,
            now=now,
        ),
        subject_id=request.subject_id,
    )


def to_admin_request(
    request: AccessRequest,
    topology: Topology,
    *,
    setting: str = "principals",
    source_country: str | None = None,
    now: int | None = None,
    principal_generation: int = 0,
) -> CedarRequest:
    """Return the policy request of an `administer` AccessRequest on `setting`."""
    return CedarRequest(
        principal_attributes(request.principal, topology, generation=principal_generation),
        request.action.value,
        SettingResource(setting),
        _context(
            request,
            topology,
            source_country=source_country,
            grant=NO_GRANT,
            break_glass=False,
            transfer_agreement="",
            transforms_applied=False,
            now=now,
        ),
    )


def to_decision(result: FieldDecision | PolicyDecision, request: AccessRequest) -> Decision:
    """Return the gateway's Decision: allowed and withheld fields among those requested."""
    if isinstance(result, PolicyDecision):
        return Decision(
            result.decision_id,
            result.allowed,
            result.reason,
            policy_ids=result.policy_ids,
            policy_hash=result.policy_hash,
            errors=tuple(result.errors),
        )
    requested = request.fields
    withheld: Mapping[str, str] = {
        name: reason for name, reason in sorted(result.withheld.items()) if name in requested
    }
    return Decision(
        result.decision_id,
        result.allowed,
        result.reason,
        allowed_fields=result.allowed_fields & requested if result.allowed else frozenset(),
        withheld=dict(withheld),
        policy_ids=result.policy_ids,
        policy_hash=result.policy_hash,
        errors=tuple(result.errors),
        break_glass=result.break_glass,
    )


class CedarDecider:
    """The gateway's Decider on Cedar policies: `decide(AccessRequest) -> Decision`."""

    def __init__(
        self,
        engine: PolicyEngine,
        topology: Topology,
        catalog: Catalog,
        *,
        cache: DecisionCache | None = None,
        use_cache: bool = True,
    ) -> None:
        """Decide with `engine`, through `cache` (a new one unless `use_cache` is False)."""
        engine.snapshot.config.verify_regions(topology.regions)
        self.engine = engine
        self.topology = topology
        self.catalog = catalog
        self.cache = cache if cache is not None or not use_cache else DecisionCache(engine)
        # Decisions by their whole decision-relevant input (never the subject id): a hit
        # skips building the policy request too, which costs more than the cached
        # evaluation it leads to. Keyed on the snapshot generation, so a reload empties it.
        self._front: dict[tuple[object, ...], Decision] = {}
        self._use_front = use_cache

    def evaluate(
        self,
        request: AccessRequest,
        *,
        grant: GrantState = NO_GRANT,
        source_country: str | None = None,
        break_glass: bool = False,
        setting: str = "principals",
        transfer_agreement: str = "",
        transforms_applied: bool = False,
        destination_country: str = "",
    ) -> FieldDecision | PolicyDecision:
        """Return the full decision (ids, errors, hash, break glass, log record)."""
        decider = self.cache if self.cache is not None else self.engine
        if request.action is Action.ADMINISTER:
            admin = to_admin_request(
                request, self.topology, setting=setting, source_country=source_country
            )
            return decider.decide(admin)
        policy_request = to_policy_request(
            request,
            self.topology,
            self.catalog,
            grant=grant,
            source_country=source_country,
            break_glass=break_glass,
            transfer_agreement=transfer_agreement,
            transforms_applied=transforms_applied,
            destination_country=destination_country,
        )
        return decider.decide_fields(policy_request)

    def decide(self, request: AccessRequest) -> Decision:
        """Decide one request (the gateway's Decider protocol), with its grant and flags."""
        snapshot = self.engine.snapshot
        if not self._use_front or snapshot.uses_time:
            return self._decide(request)
        key = (
            snapshot.generation,
            request.principal,
            request.action,
            request.region,
            request.fields,
            request.purpose,
            request.source_country,
            request.break_glass,
            request.grant,
            request.transfer,
        )
        known = self._front.get(key)
        if known is not None:
            return replace(known, decision_id=new_decision_id())
        decision = self._decide(request)
        if len(self._front) >= _FRONT_ENTRIES:
            self._front = {}
        self._front[key] = decision
        return decision

    def _decide(self, request: AccessRequest) -> Decision:
        """Evaluate one request through the cache and the engine.

        A transfer covered by an agreement is decided with `transfer_agreement` and its
        `destination_country` set and, unless it is an in-region token resolution,
        `transforms_applied`: the gateway's transform step applies the agreement's
        transforms to whatever it lets out.
        """
        transfer = request.transfer
        agreement = transfer.agreement_id if transfer is not None else ""
        result = self.evaluate(
            request,
            grant=request.grant,
            source_country=request.source_country,
            break_glass=request.break_glass,
            transfer_agreement=agreement,
            transforms_applied=bool(agreement) and not transfer.resolving,  # type: ignore[union-attr]
            destination_country=transfer.destination_country if agreement else "",  # type: ignore[union-attr]
        )
        return to_decision(result, request)
