"""Routes for the topology and for administering principals (role `admin`)."""

from __future__ import annotations

from fastapi import APIRouter

from domicile.api.deps import CurrentGateway, CurrentPrincipal
from domicile.api.models import PrincipalBody, RegionBody
from domicile.errors import AccessDenied
from domicile.gateway.request import AccessRequest, Action
from domicile.principals.store import Principal

router = APIRouter(prefix="/v1", tags=["administration"])


@router.get("/regions", response_model=list[RegionBody])
def regions(principal: CurrentPrincipal, gateway: CurrentGateway) -> list[RegionBody]:
    """The regions of the topology and how many subjects live in each."""
    del principal
    counts = gateway.directory.counts()
    return [
        RegionBody(
            name=region.name,
            jurisdiction=region.jurisdiction,
            location=region.location,
            subjects=counts.get(region.name, 0),
        )
        for region in gateway.topology.regions.values()
    ]


def _body(p: Principal) -> PrincipalBody:
    return PrincipalBody(
        id=p.id,
        entity=p.entity,
        country=p.country,
        roles=sorted(p.roles),
        created_at=p.created_at,
        revoked_at=p.revoked_at,
    )


@router.get("/principals", response_model=list[PrincipalBody])
def principals(principal: CurrentPrincipal, gateway: CurrentGateway) -> list[PrincipalBody]:
    """Every principal (administrators only)."""
    region = next(iter(gateway.topology.regions))
    decision = gateway.decider.decide(AccessRequest(principal, Action.ADMINISTER, region))
    if not decision.allowed:
        raise AccessDenied(decision.reason)
    return [_body(p) for p in gateway.principals.list()]
