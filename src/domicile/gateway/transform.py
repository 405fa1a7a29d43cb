"""The transform step: what a value looks like when it leaves its home region.

A read served in region returns the values as stored. A transfer (a remote read or a
dataset export under an agreement) returns only the fields the agreement sends, each
through its transform (keyed pseudonyms, tokens, generalisation, suppression), with
keys of the home region: only outputs cross the border.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from domicile.catalog.catalog import JsonValue
from domicile.gateway.request import AccessRequest
from domicile.pets.keys import PetKeys
from domicile.pets.transform import transform_values


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


class Outbound:
    """In-region reads pass unchanged; transfers go through their agreement's transforms."""

    def __init__(self, keys: Mapping[str, PetKeys]) -> None:
        """Transform with `keys` (region → that region's PETs keys)."""
        self.keys = dict(keys)

    def transform(
        self, request: AccessRequest, values: Mapping[str, JsonValue]
    ) -> dict[str, JsonValue]:
        """Return the values unchanged in region, else transformed under the agreement."""
        transfer = request.transfer
        if transfer is None or not transfer.agreement_id or transfer.resolving:
            return dict(values)
        plan = {p.field: p for p in transfer.plan}
        # The pseudonym domain is the agreement: joins work within it, not across.
        return transform_values(
            plan, values, self.keys[request.region], domain=transfer.agreement_id
        )
