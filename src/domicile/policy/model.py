"""Values the policy engine takes and returns: requests, verdicts and decisions.

Pure data, no I/O. A :class:`CedarRequest` is one Cedar evaluation (one principal,
action, resource and context); a :class:`PolicyRequest` is what the gateway asks about
a subject's fields, decided with one evaluation per data category among those fields.

Nothing here holds personal data of a subject: no subject id reaches Cedar (it is
kept on :class:`PolicyRequest` only so the caller can correlate), and no field value
is ever part of a request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeAlias

__all__ = [
    "ACTIONS",
    "CATEGORIES",
    "DATA_ACTIONS",
    "NO_GRANT",
    "PARTIAL_ACTIONS",
    "CedarRequest",
    "DataResource",
    "FieldDecision",
    "GrantState",
    "JsonObject",
    "PolicyContext",
    "PolicyDecision",
    "PolicyPrincipal",
    "PolicyRequest",
    "SettingResource",
    "Verdict",
]

JsonObject: TypeAlias = dict[str, Any]
"""A JSON object as the decision log records it (`Any`: JSON is heterogeneous)."""

DATA_ACTIONS = (
    "register",
    "read",
    "write",
    "erase",
    "export",
    "relocate",
    "transfer",
    "aggregate",
    "approve",
    "break_glass",
)
"""Actions on a subject's data (resource type `Data`)."""

ACTIONS = (*DATA_ACTIONS, "administer")
"""Every action the schema knows; `administer` acts on a `Setting`."""

CATEGORIES = ("restricted", "allowable", "public", "aggregate")
"""Data categories, most sensitive first (the order withheld reasons are chosen in)."""

PARTIAL_ACTIONS = frozenset({"read"})
"""Actions that may be served in part (the allowed fields); all others are all or nothing."""

_CATEGORY_RANK = {name: rank for rank, name in enumerate(CATEGORIES)}


@dataclass(frozen=True, slots=True)
class PolicyPrincipal:
    """The principal's decision-relevant attributes, plus a generation for the cache."""

    id: str
    entity: str
    country: str
    jurisdiction: str
    region: str
    roles: frozenset[str]
    generation: int = 0
    """Bumped by the principal store on any change, so cached decisions go stale."""

    def key(self) -> tuple[object, ...]:
        """Return the attributes as a tuple, for cache keys."""
        return (
            self.id,
            self.entity,
            self.country,
            self.jurisdiction,
            self.region,
            self.roles,
            self.generation,
        )


@dataclass(frozen=True, slots=True)
class GrantState:
    """What the grant store found for this request; the default means "no grant"."""

    id: str = ""
    approved: bool = False
    expired: bool = False
    revoked: bool = False
    purpose: str = ""
    categories: frozenset[str] = frozenset()
    covers_subject: bool = False

    def key(self) -> tuple[object, ...]:
        """Return the attributes as a tuple, for cache keys."""
        return (
            self.id,
            self.approved,
            self.expired,
            self.revoked,
            self.purpose,
            self.categories,
            self.covers_subject,
        )

    def record(self) -> dict[str, Any]:
        """The state as JSON, as policies see it and decision records keep it."""
        return {
            "id": self.id,
            "approved": self.approved,
            "expired": self.expired,
            "revoked": self.revoked,
            "purpose": self.purpose,
            "categories": sorted(self.categories),
            "covers_subject": self.covers_subject,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> GrantState:
        """The state back from `record()` (for replaying a logged decision)."""
        return cls(
            id=str(record.get("id", "")),
            approved=bool(record.get("approved")),
            expired=bool(record.get("expired")),
            revoked=bool(record.get("revoked")),
            purpose=str(record.get("purpose", "")),
            categories=frozenset(str(c) for c in record.get("categories", ())),
            covers_subject=bool(record.get("covers_subject")),
        )


NO_GRANT = GrantState()
"""The grant state of a request no grant covers."""


@dataclass(frozen=True, slots=True)
class PolicyContext:
    """The request's context: purpose, where it comes from, grant and flags, time."""

    purpose: str = ""
    source_country: str = ""
    source_jurisdiction: str = ""
    source_region: str = ""
    grant: GrantState = NO_GRANT
    break_glass: bool = False
    transfer_agreement: str = ""
    transforms_applied: bool = False
    destination_country: str = ""
    """The recipient's country of a transfer (a dataset export's destination, the
    country a remote read comes from); empty for a flow that stays in its region."""
    time: int = 0
    """Seconds since the Unix epoch."""

    def key(self, *, with_time: bool) -> tuple[object, ...]:
        """Return the attributes as a tuple; `time` only if a policy reads it."""
        return (
            self.purpose,
            self.source_country,
            self.source_jurisdiction,
            self.source_region,
            self.grant.key(),
            self.break_glass,
            self.transfer_agreement,
            self.transforms_applied,
            self.destination_country,
            self.time if with_time else None,
        )


@dataclass(frozen=True, slots=True)
class DataResource:
    """A subject's data of one category in one region (never the subject itself)."""

    home_region: str
    home_jurisdiction: str
    category: str

    def key(self) -> tuple[str, ...]:
        """Return the attributes as a tuple, for cache keys."""
        return ("data", self.home_region, self.home_jurisdiction, self.category)


@dataclass(frozen=True, slots=True)
class SettingResource:
    """Configuration an administrator manages: `principals`, `policies`, `catalog`…"""

    name: str

    def key(self) -> tuple[str, ...]:
        """Return the attributes as a tuple, for cache keys."""
        return ("setting", self.name)


@dataclass(frozen=True, slots=True)
class CedarRequest:
    """One Cedar evaluation: principal, action, resource, context."""

    principal: PolicyPrincipal
    action: str
    resource: DataResource | SettingResource
    context: PolicyContext

    def key(self, *, with_time: bool) -> tuple[object, ...]:
        """Return every decision-relevant attribute as a tuple, for cache keys."""
        return (
            self.principal.key(),
            self.action,
            self.resource.key(),
            self.context.key(with_time=with_time),
        )

    def masked_input(self) -> JsonObject:
        """Return the request as a decision log records it (no personal data in it)."""
        if isinstance(self.resource, DataResource):
            resource: JsonObject = {
                "type": "data",
                "region": self.resource.home_region,
                "jurisdiction": self.resource.home_jurisdiction,
                "category": self.resource.category,
            }
        else:
            resource = {"type": "setting", "name": self.resource.name}
        return {
            "principal": _masked_principal(self.principal),
            "action": self.action,
            "resource": resource,
            "context": _masked_context(self.context),
        }


def _masked_principal(principal: PolicyPrincipal) -> JsonObject:
    return {
        "id": principal.id,
        "entity": principal.entity,
        "country": principal.country,
        "jurisdiction": principal.jurisdiction,
        "region": principal.region,
        "roles": sorted(principal.roles),
    }


def _masked_context(context: PolicyContext) -> JsonObject:
    grant = context.grant
    return {
        "purpose": context.purpose,
        "source_country": context.source_country,
        "source_jurisdiction": context.source_jurisdiction,
        "source_region": context.source_region,
        "grant": grant.record(),
        "break_glass": context.break_glass,
        "transfer_agreement": context.transfer_agreement,
        "transforms_applied": context.transforms_applied,
        "destination_country": context.destination_country,
        "time": context.time,
    }


@dataclass(frozen=True, slots=True)
class PolicyRequest:
    """A request about a subject's fields: decided once per category among `fields`."""

    principal: PolicyPrincipal
    action: str
    home_region: str
    home_jurisdiction: str
    fields: Mapping[str, str]
    """Field name → data category, for every field the request touches."""
    context: PolicyContext
    subject_id: str | None = None
    """Never given to Cedar; kept so the caller can correlate, and erased from logs."""

    def categories(self) -> tuple[str, ...]:
        """Return the categories of the requested fields, most sensitive first."""
        return tuple(sorted(set(self.fields.values()), key=lambda c: _CATEGORY_RANK.get(c, 99)))

    def for_category(self, category: str) -> CedarRequest:
        """Return the Cedar evaluation that decides the fields of `category`."""
        resource = DataResource(self.home_region, self.home_jurisdiction, category)
        return CedarRequest(self.principal, self.action, resource, self.context)

    def masked_input(self) -> JsonObject:
        """Return the request as a decision log records it: fields by name, no subject id."""
        return {
            "principal": _masked_principal(self.principal),
            "action": self.action,
            "resource": {
                "type": "data",
                "region": self.home_region,
                "jurisdiction": self.home_jurisdiction,
                "fields": {name: self.fields[name] for name in sorted(self.fields)},
            },
            "context": _masked_context(self.context),
        }


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of one evaluation, without request or id: what the cache keeps."""

    allowed: bool
    cedar_decision: str
    """What Cedar answered (`Allow`, `Deny`, `NoDecision`) before fail-closed."""
    policy_ids: tuple[str, ...]
    """The determining policies (`@id`s); `default-deny` or `fail-closed` when none."""
    errors: tuple[str, ...]
    reason: str
    break_glass: bool = False
    """An allow that a policy annotated `@alert("break_glass")` determined."""


def _result_of(verdict: Verdict) -> JsonObject:
    return {"allow": verdict.allowed, "break_glass": verdict.break_glass, "reason": verdict.reason}


@dataclass(frozen=True, slots=True)
class PolicyDecision:
    """One evaluation's decision: a fresh id, the request, the verdict, the policy hash."""

    decision_id: str
    request: CedarRequest
    verdict: Verdict
    policy_hash: str

    @property
    def allowed(self) -> bool:
        """True only for a Cedar Allow without any evaluation error."""
        return self.verdict.allowed

    @property
    def policy_ids(self) -> tuple[str, ...]:
        """The determining policy ids."""
        return self.verdict.policy_ids

    @property
    def errors(self) -> tuple[str, ...]:
        """Evaluation errors (any of them makes the decision a deny)."""
        return self.verdict.errors

    @property
    def reason(self) -> str:
        """Why, in one line naming the determining policies."""
        return self.verdict.reason

    @property
    def break_glass(self) -> bool:
        """True when break-glass access was granted: the gateway must raise an alert."""
        return self.verdict.break_glass

    def log_record(self) -> JsonObject:
        """Return an OPA-style decision log record of this decision."""
        return {
            "decision_id": self.decision_id,
            "policy_hash": self.policy_hash,
            "determining_policies": list(self.verdict.policy_ids),
            "errors": list(self.verdict.errors),
            "input": self.request.masked_input(),
            "result": _result_of(self.verdict),
            "erased": [],
        }


@dataclass(frozen=True, slots=True)
class FieldDecision:
    """A field-level decision: exactly the allowed fields, and why each other is withheld."""

    decision_id: str
    request: PolicyRequest
    policy_hash: str
    verdicts: Mapping[str, Verdict]
    """Category → verdict, one per category among the requested fields."""
    allowed_fields: frozenset[str]
    withheld: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """Field → reason naming the determining policies."""

    @property
    def allowed(self) -> bool:
        """Whether the request may go ahead at all.

        A read goes ahead when at least one field is allowed (and returns only those);
        every other action is all or nothing. A request for no field is denied.
        """
        if not self.verdicts:
            return False
        if self.request.action in PARTIAL_ACTIONS:
            return bool(self.allowed_fields)
        return all(verdict.allowed for verdict in self.verdicts.values())

    @property
    def policy_ids(self) -> tuple[str, ...]:
        """The determining policy ids of every category, each once, in order."""
        return tuple(dict.fromkeys(p for v in self.verdicts.values() for p in v.policy_ids))

    @property
    def errors(self) -> tuple[str, ...]:
        """Evaluation errors of every category, each once."""
        return tuple(dict.fromkeys(e for v in self.verdicts.values() for e in v.errors))

    @property
    def break_glass(self) -> bool:
        """True when any allowed category was reached by break glass."""
        return any(v.allowed and v.break_glass for v in self.verdicts.values())

    @property
    def reason(self) -> str:
        """One line: why the request is allowed, in part or not at all."""
        denied = [v for v in self.verdicts.values() if not v.allowed]
        if not self.verdicts:
            return "no field was requested"
        if not denied:
            return next(iter(self.verdicts.values())).reason
        if self.allowed and self.request.action in PARTIAL_ACTIONS:
            return f"{len(self.withheld)} of {len(self.request.fields)} fields withheld"
        return denied[0].reason

    def log_record(self) -> JsonObject:
        """Return an OPA-style decision log record (subject id erased, fields by name)."""
        request = self.request
        categories = {
            name: {**_result_of(v), "determining_policies": list(v.policy_ids)}
            for name, v in self.verdicts.items()
        }
        return {
            "decision_id": self.decision_id,
            "policy_hash": self.policy_hash,
            "determining_policies": list(self.policy_ids),
            "errors": list(self.errors),
            "input": request.masked_input(),
            "result": {
                "allow": self.allowed,
                "break_glass": self.break_glass,
                "reason": self.reason,
                "allowed_fields": sorted(self.allowed_fields),
                "withheld": dict(sorted(self.withheld.items())),
                "categories": categories,
            },
            "erased": [] if request.subject_id is None else ["/input/subject_id"],
        }
