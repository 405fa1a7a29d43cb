"""Routes for the topology and for administering principals (role `admin`)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel

from domicile.api.deps import CurrentGateway, CurrentPrincipal, runtime_of
from domicile.api.models import PrincipalBody, RegionBody
from domicile.gateway.pipeline import Gateway
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


def _administer(principal: Principal, gateway: Gateway) -> None:
    region = next(iter(gateway.topology.regions))
    gateway.decide(AccessRequest(principal, Action.ADMINISTER, region))  # recorded


@router.get("/principals", response_model=list[PrincipalBody])
def principals(principal: CurrentPrincipal, gateway: CurrentGateway) -> list[PrincipalBody]:
    """Every principal (administrators only)."""
    _administer(principal, gateway)
    return [_body(p) for p in gateway.principals.list()]


class PolicyVersionBody(BaseModel):
    """The policy version in force."""

    policy_hash: str
    policy_ids: list[str]


@router.post("/policy:reload", response_model=PolicyVersionBody)
def reload_policy(
    principal: CurrentPrincipal, gateway: CurrentGateway, request: Request
) -> PolicyVersionBody:
    """Re-read the policy files; a bad file keeps the version in force and says why."""
    _administer(principal, gateway)
    runtime = runtime_of(request)
    record = runtime.reload_policy()
    return PolicyVersionBody(policy_hash=record["policy_hash"], policy_ids=record["policy_ids"])
