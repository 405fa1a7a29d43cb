"""Values that flow through the gateway pipeline: requests, decisions and events."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from domicile.pets.transform import FieldPlan
from domicile.policy.model import NO_GRANT, GrantState
from domicile.principals.store import Principal


class Action(StrEnum):
    """What a principal asks to do."""

    REGISTER = "register"
    READ = "read"
    WRITE = "write"
    ERASE = "erase"
    EXPORT = "export"
    RELOCATE = "relocate"
    TRANSFER = "transfer"
    AGGREGATE = "aggregate"
    APPROVE = "approve"
    BREAK_GLASS = "break_glass"
    ADMINISTER = "administer"


@dataclass(frozen=True)
class Transfer:
    """The terms a flow out of its region travels under (set by the gateway's transfer step).

    `agreement_id` is empty when no agreement covers the flow; `refused` then says why.
    """

    agreement_id: str = ""
    agreement_version: int = 0
    destination_entity: str = ""
    destination_country: str = ""
    plan: tuple[FieldPlan, ...] = ()
    refused: str = ""
    resolving: bool = False  # an in-region token resolution of this agreement's domain

    def sent(self) -> dict[str, str]:
        """Field → transform of every field the agreement sends (suppressed ones left out)."""
        return {p.field: p.transform for p in self.plan if p.transform != "suppress"}


@dataclass(frozen=True)
class AccessRequest:
    """Everything the decide step may look at; no field values, only names."""

    principal: Principal
    action: Action
    region: str
    subject_id: str | None = None
    fields: frozenset[str] = frozenset()
    purpose: str | None = None
    source_country: str | None = None  # where the request comes from, if measured
    break_glass: bool = False  # the caller invokes emergency access (alerted, reviewed)
    grant: GrantState = NO_GRANT  # what the grant store found for this request
    transfer: Transfer | None = None  # set when the data leaves its region (or a token is resolved)

    def for_subject(self, subject_id: str, grant: GrantState) -> AccessRequest:
        """The same request about another subject with its grant state (a batch read's
        records); a plain copy of the fields, as `Decision.with_id` makes."""
        copy = object.__new__(AccessRequest)
        copy.__dict__.update(self.__dict__, subject_id=subject_id, grant=grant)
        return copy


@dataclass(frozen=True)
class Decision:
    """The decide step's answer: the request as a whole, and field by field."""

    decision_id: str
    allowed: bool
    reason: str
    allowed_fields: frozenset[str] = frozenset()
    withheld: dict[str, str] = field(default_factory=dict)
    policy_ids: tuple[str, ...] = ()
    policy_hash: str = ""
    errors: tuple[str, ...] = ()
    break_glass: bool = False  # decided by a break-glass policy: raise an alert at once

    def with_id(self, decision_id: str) -> Decision:
        """The same decision under another id (a batch's records that share an
        evaluation); a plain copy of the fields, as `dataclasses.replace` would make,
        without its per-call introspection."""
        copy = object.__new__(Decision)
        copy.__dict__.update(self.__dict__, decision_id=decision_id)
        return copy


@dataclass(frozen=True)
class Event:
    """Something that happened to a region's data, for the record step.

    Attributes hold ids, names and keyed subject references — never a field value.
    The kind is one of `domicile.ledger.entry.KINDS`.
    """

    kind: str
    region: str
    attributes: dict[str, Any] = field(default_factory=dict)
    fill: Mapping[str, str | None] | None = None
    """Values for placeholders in `attributes`, when several events share one template.

    The recorder encodes a shared `attributes` object once and puts each event's values
    in place of the placeholder strings (see `LedgerRecorder`); the bytes are the same
    as encoding the filled-in attributes."""
