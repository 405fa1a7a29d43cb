"""The cross-border step: which flows are transfers, under which agreement, and their record.

A read is a transfer when the principal, or the country the request comes from, is
outside the subject's home region — unless the principal is a service of the home
jurisdiction (the same exceptions the default policies make). A transfer:

1. finds the agreement covering the recipient (the principal's entity, in the country
   the request comes from), the purpose and the fields (`AgreementStore.find`, which
   also checks the destination registry); without one the request is decided with no
   agreement, so the policies deny it, and the denial says why;
2. is decided with `transfer_agreement` and `transforms_applied` in the context; fields
   the agreement does not send are withheld (`TransferDecider`);
3. is counted against the bulk thresholds before any value is opened (`authorise`):
   a warning raises an `alert` entry, a block an `alert` entry and a denial;
4. is recorded as a `transfer` entry (agreement id and version, destination, fields
   and their transforms, subject ref) before it is served;
5. leaves through the agreement's transforms (`gateway.transform.Outbound`).

Ledger entries of this module hold ids, names, counts and keyed references only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from domicile.catalog.catalog import Catalog, JsonValue
from domicile.errors import AccessDenied, IntegrityError, InvalidInput, NotFound
from domicile.gateway.decide import Decider
from domicile.gateway.request import AccessRequest, Action, Decision, Event, Transfer
from domicile.pets.keyed import resolve_token
from domicile.pets.keys import PetKeys
from domicile.policy.places import locate
from domicile.principals.store import Principal
from domicile.residency.topology import Topology
from domicile.transfers.model import Agreement
from domicile.transfers.store import AgreementStore, DestinationRegistry
from domicile.transfers.thresholds import ThresholdCounter, ThresholdStatus

if TYPE_CHECKING:
    from domicile.gateway.pipeline import Gateway, Recorded

__all__ = ["TransferDecider", "TransferDesk", "resolve_in_region", "terms_of", "version_events"]


def terms_of(agreement: Agreement, catalog: Catalog, *, resolving: bool = False) -> Transfer:
    """Return the transfer terms of one agreement version, for an AccessRequest."""
    plan = tuple(agreement.plan(catalog)[name] for name in sorted(agreement.fields))
    return Transfer(
        agreement_id=agreement.id,
        agreement_version=agreement.version,
        destination_entity=agreement.destination_entity,
        destination_country=agreement.destination_country,
        plan=plan,
        resolving=resolving,
    )


@dataclass
class TransferDesk:
    """Agreements, destinations, thresholds and region keys, as the gateway uses them."""

    topology: Topology
    catalog: Catalog
    agreements: AgreementStore
    destinations: DestinationRegistry
    counters: Mapping[str, ThresholdCounter]
    keys: Mapping[str, PetKeys]

    def is_transfer(self, principal: Principal, region: str, source_country: str | None) -> bool:
        """True when a read of `region`'s data by `principal` leaves the region."""
        _, p_jurisdiction, p_region = locate(self.topology, principal.country)
        _, s_jurisdiction, s_region = locate(self.topology, source_country or principal.country)
        if p_region == region and s_region == region:
            return False
        home = self.topology.region(region).jurisdiction
        is_home_service = "service" in principal.roles and p_jurisdiction == s_jurisdiction == home
        return not is_home_service

    def for_read(
        self,
        principal: Principal,
        names: frozenset[str],
        purpose: str,
        source_country: str | None,
        at: datetime | None = None,
    ) -> Transfer:
        """The terms a remote read travels under, or a Transfer that says why there are none.

        Restricted fields never leave, so only the others must be covered; an agreement
        that covers some of them still serves those (the rest are withheld).
        """
        country = source_country or principal.country
        wanted = [n for n in names if self.catalog.field(n).category.value != "restricted"]
        try:
            found = self.agreements.find(principal.entity, country, purpose, wanted, at)
        except AccessDenied as exc:
            try:
                found = self.agreements.find(principal.entity, country, purpose, (), at)
            except AccessDenied:
                return Transfer(refused=str(exc))
        return terms_of(found, self.catalog)

    def authorise(self, gateway: Gateway, recorded: Sequence[Recorded]) -> None:
        """Count allowed transfers against the thresholds, then record each one.

        Raises AccessDenied (after recording an alert) when a threshold blocks: then
        nothing is counted and nothing may be served.
        """
        groups: dict[tuple[str, Transfer, tuple[tuple[str, str], ...]], list[Recorded]] = {}
        for rec in recorded:
            transfer = rec.request.transfer
            if transfer is None or not transfer.agreement_id or not rec.decision.allowed:
                continue
            sent = transfer.sent()
            fields = tuple((n, sent[n]) for n in sorted(rec.decision.allowed_fields) if n in sent)
            groups.setdefault((rec.request.region, transfer, fields), []).append(rec)
        events: list[Event] = []
        for (region, transfer, fields), recs in groups.items():
            ids = [r.request.subject_id for r in recs if r.request.subject_id]
            status = self.count(region, transfer, dict(fields), ids)
            events += self.threshold_events(region, transfer, status)
            if status.blocked:
                gateway.record(events)
                status.verify_allowed()
            for rec in recs:
                sid = rec.request.subject_id
                ref = gateway.subject_ref(region, sid) if sid else None
                events.append(remote_read_event(rec, dict(fields), ref))
        if events:
            gateway.record(events)

    def count(
        self, region: str, transfer: Transfer, fields: Mapping[str, str], ids: Sequence[str]
    ) -> ThresholdStatus:
        """Count `ids` sent under `transfer` with `fields` in `region`'s threshold counter."""
        agreement = self.agreements.get(transfer.agreement_id, transfer.agreement_version)
        return self.counters[region].check_and_count(
            destination_country=transfer.destination_country,
            fields=fields,
            subject_ids=ids,
            at=datetime.now(UTC),
            agreement=agreement,
        )

    @staticmethod
    def threshold_events(region: str, transfer: Transfer, status: ThresholdStatus) -> list[Event]:
        """An `alert` entry for a threshold warning or block (counts only)."""
        if not status.blocked and not status.warnings:
            return []
        alert = "transfer-threshold-block" if status.blocked else "transfer-threshold-warning"
        return [
            Event(
                "alert",
                region,
                {
                    "alert": alert,
                    "agreement_id": transfer.agreement_id,
                    "agreement_version": transfer.agreement_version,
                    "destination_country": transfer.destination_country,
                    "thresholds": status.ledger_record(),
                },
            )
        ]


def remote_read_event(rec: Recorded, fields: Mapping[str, str], subject_ref: str | None) -> Event:
    """The `transfer` entry of one remote read: terms, fields sent and the subject's ref."""
    transfer = rec.request.transfer
    assert transfer is not None
    return Event(
        "transfer",
        rec.request.region,
        {
            "event": "remote-read",
            "decision_id": rec.decision.decision_id,
            "decision_index": rec.index,
            "principal_id": rec.request.principal.id,
            "agreement_id": transfer.agreement_id,
            "agreement_version": transfer.agreement_version,
            "destination_entity": transfer.destination_entity,
            "destination_country": transfer.destination_country,
            "purpose": rec.request.purpose,
            "fields": dict(sorted(fields.items())),
            "subjects": 1,
            "subject_ref": subject_ref,
        },
    )


class TransferDecider:
    """Wraps a Decider: withholds what an agreement does not send, and says why a flow
    without an agreement was denied."""

    def __init__(self, inner: Decider) -> None:
        """Decide with `inner`, then apply the agreement's field list."""
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def countries_of_concern(self) -> frozenset[str]:
        """The countries of concern of the policy version in force (none if unknown)."""
        engine = getattr(self.inner, "engine", None)
        if engine is None:
            return frozenset()
        return frozenset(engine.snapshot.config.countries_of_concern)

    def decide(self, request: AccessRequest) -> Decision:
        """Decide `request`; a transfer gets only the fields its agreement sends."""
        decision = self.inner.decide(request)
        transfer = request.transfer
        if transfer is None or transfer.resolving:
            return decision
        if not transfer.agreement_id:
            return decision if decision.allowed else replace(decision, reason=transfer.refused)
        concern = self.countries_of_concern()
        if decision.allowed and transfer.destination_country in concern:
            reason = (
                f"agreement `{transfer.agreement_id}` sends to {transfer.destination_country},"
                " a country of concern"
            )
            withheld = dict.fromkeys(sorted(request.fields), reason)
            return replace(
                decision, allowed=False, reason=reason, allowed_fields=frozenset(),
                withheld=withheld,
            )  # fmt: skip
        uncovered = decision.allowed_fields - set(transfer.sent())
        if not uncovered:
            return decision
        withheld = dict(decision.withheld)
        for name in sorted(uncovered):
            withheld[name] = f"agreement `{transfer.agreement_id}` does not send `{name}`"
        allowed = decision.allowed_fields - uncovered
        if not allowed:
            reason = f"agreement `{transfer.agreement_id}` sends none of the requested fields"
            return replace(
                decision, allowed=False, reason=reason, allowed_fields=frozenset(),
                withheld=dict(sorted(withheld.items())),
            )  # fmt: skip
        return replace(decision, allowed_fields=allowed, withheld=dict(sorted(withheld.items())))


def resolve_in_region(
    gateway: Gateway,
    desk: TransferDesk,
    principal: Principal,
    region: str,
    *,
    agreement_id: str,
    field: str,
    token: str,
    purpose: str,
    source_country: str | None = None,
) -> JsonValue:
    """Resolve a token issued under `agreement_id` back to its value, in its home region.

    Decided by policy (an in-region officer of the security entity, purpose security or
    legal), recorded, and logged as a `transfer` entry that names no value and no token
    (only its SHA-256). NotFound when the token does not resolve with this region's key.
    """
    if region not in gateway.regions:
        raise InvalidInput(f"no region `{region[:64]}`")
    spec = desk.catalog.field(field)  # raises UnknownField
    agreement = desk.agreements.get(agreement_id)
    request = AccessRequest(
        principal, Action.READ, region, None, frozenset({spec.name}), purpose,
        source_country=source_country, transfer=terms_of(agreement, desk.catalog, resolving=True),
    )  # fmt: skip
    recorded = gateway.decide(request)
    try:
        value = resolve_token(field, token, desk.keys[region], agreement.id)
    except IntegrityError as exc:
        raise NotFound(str(exc)) from exc
    gateway.record(
        [
            Event(
                "transfer",
                region,
                {
                    "event": "token-resolved",
                    "decision_id": recorded.decision.decision_id,
                    "decision_index": recorded.index,
                    "principal_id": principal.id,
                    "agreement_id": agreement.id,
                    "field": field,
                    "purpose": purpose,
                    "token_sha256": hashlib.sha256(token.encode()).hexdigest(),
                },
            )
        ]
    )
    return value


def version_events(topology: Topology, record: Mapping[str, object], event: str) -> list[Event]:
    """A `transfer` entry per region for an agreement or destination version (no personal data)."""
    return [
        Event("transfer", name, {"event": event, "record": dict(record)})
        for name in topology.regions
    ]
