"""The decide step: the single place that says yes or no.

The gateway asks a `Decider`; the one in use is `domicile.policy.adapter.CedarDecider`,
which evaluates the Cedar policy set (deny by default, fail closed).
"""

from __future__ import annotations

from typing import Protocol

from domicile.gateway.request import AccessRequest, Decision


class Decider(Protocol):
    """Decides access requests."""

    def decide(self, request: AccessRequest) -> Decision:
        """Return the decision for one request."""
