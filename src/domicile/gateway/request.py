"""Values that flow through the gateway pipeline: requests, decisions and events."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from domicile.principals.store import Principal


class Action(StrEnum):
    """What a principal asks to do."""

    REGISTER = "register"
    READ = "read"
    WRITE = "write"
    ERASE = "erase"
    EXPORT = "export"
    RELOCATE = "relocate"
    ADMINISTER = "administer"


@dataclass(frozen=True)
class AccessRequest:
    """Everything the decide step may look at; no field values, only names."""

    principal: Principal
    action: Action
    region: str
    subject_id: str | None = None
    fields: frozenset[str] = frozenset()
    purpose: str | None = None


@dataclass(frozen=True)
class Decision:
    """The decide step's answer: the request as a whole, and field by field."""

    decision_id: str
    allowed: bool
    reason: str
    allowed_fields: frozenset[str] = frozenset()
    withheld: dict[str, str] = field(default_factory=dict)
    policy_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Event:
    """Something that happened to a region's data, for the record step.

    Carries ids and field names only — never a field value.
    """

    kind: str
    region: str
    principal_id: str
    decision_id: str
    subject_id: str | None = None
    fields: tuple[str, ...] = ()
    purpose: str | None = None
    allowed: bool = True
    detail: dict[str, str | int] = field(default_factory=dict)
