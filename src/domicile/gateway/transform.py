"""The transform step: what a value looks like when it leaves its home region.

Every principal reached today is served in region (the decide step denies the rest),
so values pass unchanged; cross-border transforms arrive with the transfers issue.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from domicile.catalog.catalog import JsonValue
from domicile.gateway.request import AccessRequest


class Transformer(Protocol):
    """Transforms field values for the request that reads them."""

    def transform(
        self, request: AccessRequest, values: Mapping[str, JsonValue]
    ) -> dict[str, JsonValue]:
        """Return the values as the requester may see them."""


class InRegion:
    """Values read in their home region are returned as stored."""

    def transform(
        self, request: AccessRequest, values: Mapping[str, JsonValue]
    ) -> dict[str, JsonValue]:
        """Return the values unchanged."""
        del request
        return dict(values)
