"""Routes for just-in-time grants: request, list, approve, deny, revoke."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field

from domicile.api.deps import CurrentPrincipal, runtime_of
from domicile.grants.desk import GrantDesk
from domicile.grants.store import Grant

router = APIRouter(prefix="/v1", tags=["grants"])


class GrantRequestBody(BaseModel):
    """A request for time-limited, purpose-bound access."""

    model_config = ConfigDict(extra="forbid")

    region: str
    subjects: list[str] = Field(default_factory=list, description="empty: the whole region")
    categories: list[str] = Field(min_length=1)
    purpose: str
    justification: str = Field(min_length=1, max_length=2000)
    duration_minutes: int = Field(ge=1, le=30 * 24 * 60)


class GrantBody(BaseModel):
    """A grant and where it stands (the justification is shown to those who may see it)."""

    id: str
    requester: str
    region: str
    subjects: list[str]
    categories: list[str]
    purpose: str
    justification: str
    duration_minutes: int
    steps_required: int
    approvals: list[str]
    state: str
    created_at: str
    approved_at: str | None
    expires_at: str | None
    closed_at: str | None
    closed_by: str | None


def _desk(request: Request) -> GrantDesk:
    return runtime_of(request).grants


def _body(grant: Grant) -> GrantBody:
    return GrantBody(
        id=grant.id,
        requester=grant.requester,
        region=grant.region,
        subjects=list(grant.subjects),
        categories=list(grant.categories),
        purpose=grant.purpose,
        justification=grant.justification,
        duration_minutes=grant.duration_seconds // 60,
        steps_required=grant.steps_required,
        approvals=list(grant.approvals),
        state=grant.state,
        created_at=grant.created_at,
        approved_at=grant.approved_at,
        expires_at=grant.expires_at,
        closed_at=grant.closed_at,
        closed_by=grant.closed_by,
    )


@router.post("/grants", status_code=status.HTTP_201_CREATED, response_model=GrantBody)
def request_grant(
    body: GrantRequestBody, principal: CurrentPrincipal, request: Request
) -> GrantBody:
    """Ask for access; approvals needed rise with the data's sensitivity."""
    grant = _desk(request).request(
        principal,
        region=body.region,
        subjects=body.subjects,
        categories=body.categories,
        purpose=body.purpose,
        justification=body.justification,
        duration=timedelta(minutes=body.duration_minutes),
    )
    return _body(grant)


@router.get("/grants", response_model=list[GrantBody])
def list_grants(
    principal: CurrentPrincipal,
    request: Request,
    state: Annotated[str | None, Query(pattern="^(pending|approved|denied|revoked)$")] = None,
) -> list[GrantBody]:
    """Grants the caller may see (overseers: all; others: their own), newest first."""
    return [_body(g) for g in _desk(request).visible(principal, state)]


@router.get("/grants/{grant_id}", response_model=GrantBody)
def get_grant(grant_id: str, principal: CurrentPrincipal, request: Request) -> GrantBody:
    """One grant."""
    return _body(_desk(request).get(principal, grant_id))


@router.post("/grants/{grant_id}:approve", response_model=GrantBody)
def approve(grant_id: str, principal: CurrentPrincipal, request: Request) -> GrantBody:
    """Approve one step (never one's own request, never twice)."""
    return _body(_desk(request).decide(principal, grant_id, "approve"))


@router.post("/grants/{grant_id}:deny", response_model=GrantBody)
def deny(grant_id: str, principal: CurrentPrincipal, request: Request) -> GrantBody:
    """Deny the request."""
    return _body(_desk(request).decide(principal, grant_id, "deny"))


@router.post("/grants/{grant_id}:revoke", response_model=GrantBody)
def revoke(grant_id: str, principal: CurrentPrincipal, request: Request) -> GrantBody:
    """Revoke at once."""
    return _body(_desk(request).revoke(principal, grant_id))
