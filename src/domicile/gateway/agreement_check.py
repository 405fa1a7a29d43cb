"""Agreement terms checked against the policies when they are written, not only when used.

An agreement's fields reach its destination on two paths: a remote read by a principal
of the destination entity working in the destination country (`R`), and a dataset
export sent by a service of the subjects' region (`E`). For every region from which the
destination is a transfer, the policies in force are asked about each field on both
paths, with the agreement's terms in the context, exactly as the gateway would ask
(nothing is recorded: these are questions, not requests).

A field is refused when no path lets it out of any region: the policies would deny it
at every read and every export, so the agreement would promise what is never sent.
A destination is refused as a whole when the policies let its principals receive no
field of the catalog at all (a country of concern under the default policies): an
export there would carry data to a place the policies bar, because an export's decision
looks at the sender, who is in the region. Messages name fields and the destination,
never a value.
"""

from __future__ import annotations

from collections.abc import Mapping

from domicile.errors import ConfigError
from domicile.gateway.pipeline import Gateway
from domicile.gateway.request import AccessRequest, Action, Transfer
from domicile.gateway.transfer import TransferDesk
from domicile.pets.transform import FieldPlan
from domicile.principals.store import Principal
from domicile.transfers.model import AgreementDraft, verify_draft

__all__ = ["verify_receivable"]

_PROBE_ID = "domicile-agreement-check"


def _transfer(desk: TransferDesk, draft: AgreementDraft, fields: Mapping[str, str]) -> Transfer:
    plan = tuple(
        FieldPlan(name, desk.catalog.field(name).type, transform)
        for name, transform in sorted(fields.items())
    )
    return Transfer(
        agreement_id=draft.id, agreement_version=0, destination_entity=draft.destination_entity,
        destination_country=draft.destination_country, plan=plan,
    )  # fmt: skip


def _decide(gateway: Gateway, request: AccessRequest) -> tuple[frozenset[str], dict[str, str]]:
    """The fields the policies allow for `request`, and why each other one is withheld."""
    decision = gateway.decider.decide(request)
    if not decision.allowed:
        return frozenset(), dict.fromkeys(request.fields, decision.reason)
    withheld = {n: decision.withheld.get(n, decision.reason) for n in request.fields}
    return decision.allowed_fields, {
        n: why for n, why in withheld.items() if n not in decision.allowed_fields
    }


def _region_country(desk: TransferDesk, region: str) -> str:
    return next(c for c, r in desk.topology.routes.items() if r == region)


def verify_receivable(gateway: Gateway, desk: TransferDesk, draft: AgreementDraft) -> None:
    """Raise ConfigError naming the first field the policies would never let reach the
    agreement's destination, or saying that the destination may receive nothing."""
    fields = verify_draft(draft, desk.catalog)  # the terms themselves first
    sent = {n: t for n, t in fields.items() if t != "suppress"}
    country, entity = draft.destination_country, draft.destination_entity
    recipient = Principal(_PROBE_ID, entity, country, frozenset(), "")
    regions = [r for r in sorted(desk.topology.regions) if desk.is_transfer(recipient, r, country)]
    if not sent or not regions:
        return
    terms = _transfer(desk, draft, sent)
    # Every catalog field under the same terms, so no field is withheld for being outside
    # the agreement: the question is whether the destination may receive anything at all.
    everything = dict.fromkeys(desk.catalog.fields, "pseudonymise")
    probe = _transfer(desk, draft, everything)
    reasons: dict[str, str] = {}
    receives_anything = False
    reachable: set[str] = set()
    for region in regions:
        read = AccessRequest(recipient, Action.READ, region, None, frozenset(everything),
                             draft.purpose, source_country=country, transfer=probe)  # fmt: skip
        readable, withheld = _decide(gateway, read)
        receives_anything = receives_anything or bool(readable)
        reachable |= readable & set(sent)
        rest = frozenset(sent) - reachable
        if not rest:
            continue
        for name in rest:
            reasons.setdefault(name, withheld.get(name, "denied"))
        sender = Principal(_PROBE_ID, entity, _region_country(desk, region),
                           frozenset({"service"}), "")  # fmt: skip
        export = AccessRequest(sender, Action.TRANSFER, region, None, rest, draft.purpose,
                               transfer=terms)  # fmt: skip
        reachable |= _decide(gateway, export)[0]
    if not receives_anything:
        first = sorted(sent)[0]
        raise ConfigError(
            f"field `{first}` can never be sent to `{entity}` in `{country}`: the policies"
            f" let principals there receive no field ({reasons.get(first, 'denied')})"
        )
    for name in sorted(sent):
        if name not in reachable:
            raise ConfigError(
                f"field `{name}` can never be sent to `{entity}` in `{country}`: the policies"
                f" deny it on every read and export ({reasons.get(name, 'denied')})"
            )
