"""The decide step: the single place that says yes or no.

`RoleDecider` is the rule set in force until Cedar policies arrive: an application
backend (role `service`) may register, read, update, export, relocate and erase
subjects; an administrator (role `admin`) administers principals and configuration and
never reads personal data. Everything else is denied.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from typing import Protocol

from domicile.gateway.request import AccessRequest, Action, Decision

DEFAULT_PURPOSES = ("service", "support", "safety", "security", "legal", "analytics", "marketing")

_SUBJECT_ACTIONS = frozenset(
    {Action.REGISTER, Action.READ, Action.WRITE, Action.ERASE, Action.EXPORT, Action.RELOCATE}
)


class Decider(Protocol):
    """Decides access requests."""

    def decide(self, request: AccessRequest) -> Decision:
        """Return the decision for one request."""


def new_decision_id() -> str:
    """A fresh decision id."""
    return uuid.uuid4().hex


class RoleDecider:
    """Role rules: `service` reaches subjects, `admin` administers; deny by default."""

    def __init__(self, purposes: Collection[str] = DEFAULT_PURPOSES) -> None:
        self.purposes = frozenset(purposes)

    def decide(self, request: AccessRequest) -> Decision:
        """Decide one request."""
        decision_id = new_decision_id()
        roles = request.principal.roles
        if request.action is Action.ADMINISTER:
            if "admin" in roles:
                return Decision(
                    decision_id, True, "role `admin` administers", policy_ids=("admin",)
                )
            return self._deny(decision_id, request, "only role `admin` administers")
        if request.action not in _SUBJECT_ACTIONS:
            return self._deny(decision_id, request, f"action `{request.action}` is not allowed")
        if request.purpose is not None and request.purpose not in self.purposes:
            return self._deny(decision_id, request, f"purpose `{request.purpose}` is not known")
        if "service" not in roles:
            reason = (
                "role `admin` never reads personal data"
                if "admin" in roles
                else "only role `service` reaches subject data"
            )
            return self._deny(decision_id, request, reason)
        return Decision(
            decision_id,
            True,
            "role `service` reaches subject data",
            allowed_fields=request.fields,
            policy_ids=("service",),
        )

    @staticmethod
    def _deny(decision_id: str, request: AccessRequest, reason: str) -> Decision:
        return Decision(
            decision_id,
            False,
            reason,
            withheld=dict.fromkeys(sorted(request.fields), reason),
            policy_ids=("default-deny",),
        )
