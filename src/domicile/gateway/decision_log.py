"""How a decision becomes its ledger event: the record shaped like an OPA decision log
(decision id, policy-set hash, determining policies, errors, masked input), with enough
of the request for an independent replay and never a field value.

A batch's decisions that differ only in decision id and subject share one template:
the recorder encodes it once and puts each event's two values in place.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from domicile.gateway.request import AccessRequest, Decision, Event

DECISION_ID_SLOT = "@slot:decision_id@"
SUBJECT_SLOT = "@slot:subject_ref@"


def _shape(request: AccessRequest, decision: Decision) -> tuple[object, ...]:
    """What a decision event is made of, but its decision id and subject, by identity.

    Within one batch, requests and decisions that share these objects (principal, field
    set, grant, transfer terms, policy ids, withheld reasons…) encode to the same entry
    but for those two values; the objects are alive for the whole batch.
    """
    return (
        id(request.principal), request.action, request.region, id(request.fields),
        request.purpose, request.source_country, request.break_glass, id(request.grant),
        id(request.transfer), decision.allowed, decision.reason, decision.policy_hash,
        id(decision.policy_ids), id(decision.errors), id(decision.allowed_fields),
        id(decision.withheld),
    )  # fmt: skip


def decision_event(request: AccessRequest, decision: Decision, subject_ref: str | None) -> Event:
    """The ledger record of a decision, shaped like an OPA decision log (masked input)."""
    principal = request.principal
    return Event(
        "decision",
        request.region,
        {
            "decision_id": decision.decision_id,
            "action": request.action.value,
            "result": "allow" if decision.allowed else "deny",
            "reason": decision.reason,
            "policy_hash": decision.policy_hash,
            "policy_ids": list(decision.policy_ids),
            "errors": list(decision.errors),
            "input": {
                "principal": {
                    "id": principal.id,
                    "entity": principal.entity,
                    "country": principal.country,
                    "roles": sorted(principal.roles),
                },
                "resource": {
                    "region": request.region,
                    "subject_ref": subject_ref,
                    "fields": sorted(request.fields),
                },
                "context": _context_record(request),
            },
            "allowed_fields": sorted(decision.allowed_fields),
            "withheld": dict(sorted(decision.withheld.items())),
        },
    )


def _context_record(request: AccessRequest) -> dict[str, Any]:
    context: dict[str, Any] = {
        "purpose": request.purpose,
        "source_country": request.source_country,
        "break_glass": request.break_glass,
        "grant": request.grant.id or None,
    }
    if request.grant.id:  # the state the policy saw, so an independent replay is exact
        context["grant_state"] = request.grant.record()
    transfer = request.transfer
    if transfer is not None:  # only transfers carry these, so other records keep their shape
        context["transfer_agreement"] = transfer.agreement_id or None
        context["transfer_agreement_version"] = transfer.agreement_version or None
        context["transforms_applied"] = bool(transfer.agreement_id) and not transfer.resolving
        context["destination_country"] = transfer.destination_country or None
    return context


def templated_decision_events(
    items: Sequence[tuple[AccessRequest, str | None]], decisions: Sequence[Decision]
) -> list[Event]:
    """`decision_event` for each (request, subject ref) and decision, sharing one template
    among those of the same shape, with the decision id and ref as fills."""
    templates: dict[tuple[object, ...], dict[str, Any]] = {}
    events: list[Event] = []
    for (request, ref), decision in zip(items, decisions, strict=True):
        key = _shape(request, decision)
        template = templates.get(key)
        if template is None:
            shaped = decision.with_id(DECISION_ID_SLOT)
            template = templates[key] = decision_event(request, shaped, SUBJECT_SLOT).attributes
        fill = {DECISION_ID_SLOT: decision.decision_id, SUBJECT_SLOT: ref}
        events.append(Event("decision", request.region, template, fill))
    return events
