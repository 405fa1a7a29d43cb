"""Where a country sits in the topology, as the policies see it."""

from __future__ import annotations

from domicile.errors import UnknownCountry
from domicile.residency.topology import Topology

__all__ = ["locate"]


def locate(topology: Topology, country: str) -> tuple[str, str, str]:
    """Return (country code, jurisdiction, home region) of `country`.

    An unknown country is not an error here: it gets empty jurisdiction and region, so
    it matches no "in jurisdiction" or "in region" test and the policies deny it — and
    the decision is still made and logged.
    """
    try:
        code = topology.normalise_country(country)
        return code, topology.jurisdiction_of(code).name, topology.home_region(code)
    except UnknownCountry:
        return country, "", ""
