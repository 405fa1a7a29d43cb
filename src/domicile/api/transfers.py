"""Routes for transfers: destinations and agreements (administrators), dataset exports,
and re-identification of tokens in their home region."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Header, Request, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.background import BackgroundTask

from domicile.api.admin import _administer
from domicile.api.deps import CurrentGateway, CurrentPrincipal, runtime_of
from domicile.api.subjects import SourceCountry, _context, _expected_version
from domicile.errors import InvalidInput
from domicile.gateway.agreement_check import verify_receivable
from domicile.gateway.dataset_export import ExportSpec, finish_export, prepare_export
from domicile.gateway.pipeline import Gateway
from domicile.gateway.transfer import TransferDesk, resolve_in_region, version_events
from domicile.principals.store import Principal
from domicile.transfers.model import Agreement, AgreementDraft, Destination, TrustStatus

router = APIRouter(prefix="/v1", tags=["transfers"])


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DestinationIn(_Strict):
    """A recipient entity: its country and whether it may receive data."""

    country: str = Field(min_length=2, max_length=2)
    status: TrustStatus
    note: str = Field("", max_length=1024)


class DestinationStatusIn(_Strict):
    """A new trust status (e.g. `suspended`, at once)."""

    status: TrustStatus
    note: str = Field("", max_length=1024)


class AgreementIn(_Strict):
    """The terms of a transfer agreement; `fields` maps field → transform (null: catalog's)."""

    id: str
    destination_entity: str
    destination_country: str = Field(min_length=2, max_length=2)
    purpose: str
    legal_basis: str
    tia_reference: str
    fields: dict[str, str | None] = Field(min_length=1)
    valid_from: datetime
    valid_until: datetime
    max_subjects_per_request: int | None = None
    max_subjects_per_year: int | None = None


class ExportIn(_Strict):
    """A dataset export: a region's subjects (all or listed) under an agreement."""

    region: str
    agreement: str
    fields: list[str] | None = None
    subjects: list[str] | None = Field(None, max_length=100_000)
    k: int | None = Field(None, ge=2)
    quasi_identifiers: list[str] | None = None


class ResolveIn(_Strict):
    """A token to resolve, the agreement (domain) it was issued under, and why."""

    token: str = Field(min_length=4, max_length=8192)
    field: str
    agreement: str
    purpose: str


def _desk(request: Request) -> TransferDesk:
    return runtime_of(request).transfers


def _destination_body(d: Destination) -> dict[str, Any]:
    return d.version_record()


def _agreement_body(a: Agreement) -> dict[str, Any]:
    return a.version_record()


def _record(gateway: Gateway, desk: TransferDesk, record: dict[str, Any], event: str) -> None:
    gateway.record(version_events(desk.topology, record, event))


def _draft(body: AgreementIn) -> AgreementDraft:
    return AgreementDraft(**body.model_dump())


@router.get("/destinations")
def list_destinations(
    principal: CurrentPrincipal, gateway: CurrentGateway, request: Request
) -> list[dict[str, Any]]:
    """Every recipient entity and its trust status (administrators only)."""
    _administer(principal, gateway)
    return [_destination_body(d) for d in _desk(request).destinations.all()]


@router.put("/destinations/{entity}")
def put_destination(
    entity: str,
    body: DestinationIn,
    principal: CurrentPrincipal,
    gateway: CurrentGateway,
    request: Request,
) -> dict[str, Any]:
    """Register a recipient or change it; the new entry goes to every region's ledger."""
    _administer(principal, gateway)
    desk = _desk(request)
    destination = desk.destinations.register(
        entity, body.country.upper(), body.status, by=principal.id, note=body.note
    )
    record = _destination_body(destination)
    _record(gateway, desk, record, "destination-version")
    return record


@router.post("/destinations/{entity}:setStatus")
def set_destination_status(
    entity: str,
    body: DestinationStatusIn,
    principal: CurrentPrincipal,
    gateway: CurrentGateway,
    request: Request,
) -> dict[str, Any]:
    """Change a recipient's trust status; takes effect on the next transfer."""
    _administer(principal, gateway)
    desk = _desk(request)
    destination = desk.destinations.set_status(entity, body.status, by=principal.id, note=body.note)
    record = _destination_body(destination)
    _record(gateway, desk, record, "destination-version")
    return record


@router.get("/agreements")
def list_agreements(
    principal: CurrentPrincipal, gateway: CurrentGateway, request: Request
) -> list[dict[str, Any]]:
    """The newest version of every agreement (administrators only)."""
    _administer(principal, gateway)
    return [_agreement_body(a) for a in _desk(request).agreements.all()]


@router.post("/agreements", status_code=status.HTTP_201_CREATED)
def create_agreement(
    body: AgreementIn, principal: CurrentPrincipal, gateway: CurrentGateway, request: Request
) -> dict[str, Any]:
    """Create version 1 of an agreement; it goes to every region's ledger."""
    _administer(principal, gateway)
    desk = _desk(request)
    draft = _draft(body)
    verify_receivable(gateway, desk, draft)  # 422 naming a field the policies never send
    agreement = desk.agreements.create(draft, desk.catalog, by=principal.id)
    record = _agreement_body(agreement)
    _record(gateway, desk, record, "agreement-version")
    return record


@router.get("/agreements/{agreement_id}")
def get_agreement(
    agreement_id: str, principal: CurrentPrincipal, gateway: CurrentGateway, request: Request
) -> list[dict[str, Any]]:
    """Every version of an agreement, oldest first."""
    _administer(principal, gateway)
    desk = _desk(request)
    desk.agreements.get(agreement_id)  # NotFound
    return [_agreement_body(a) for a in desk.agreements.versions(agreement_id)]


def _required_version(if_match: str | None) -> int:
    version = _expected_version(if_match)
    if version is None:
        raise InvalidInput('changing an agreement needs `If-Match` with its version, like "1"')
    return version


@router.put("/agreements/{agreement_id}")
def amend_agreement(
    agreement_id: str,
    body: AgreementIn,
    principal: CurrentPrincipal,
    gateway: CurrentGateway,
    request: Request,
    if_match: Annotated[str | None, Header()] = None,
) -> dict[str, Any]:
    """Store the next version (every term replaced), if still at the `If-Match` version."""
    _administer(principal, gateway)
    if body.id != agreement_id:
        raise InvalidInput("the body's `id` must be the agreement in the path")
    desk = _desk(request)
    draft = _draft(body)
    verify_receivable(gateway, desk, draft)
    agreement = desk.agreements.amend(
        draft, desk.catalog, by=principal.id, expected_version=_required_version(if_match)
    )
    record = _agreement_body(agreement)
    _record(gateway, desk, record, "agreement-version")
    return record


@router.post("/agreements/{agreement_id}:terminate")
def terminate_agreement(
    agreement_id: str,
    principal: CurrentPrincipal,
    gateway: CurrentGateway,
    request: Request,
    if_match: Annotated[str | None, Header()] = None,
) -> dict[str, Any]:
    """End an agreement at once (a final version)."""
    _administer(principal, gateway)
    desk = _desk(request)
    agreement = desk.agreements.terminate(
        agreement_id, by=principal.id, expected_version=_required_version(if_match)
    )
    record = _agreement_body(agreement)
    _record(gateway, desk, record, "agreement-version")
    return record


def _export(principal: Principal, gateway: Gateway, request: Request, body: ExportIn) -> Any:
    settings = runtime_of(request).settings
    spec = ExportSpec(
        region=body.region,
        agreement_id=body.agreement,
        fields=tuple(body.fields) if body.fields is not None else None,
        subjects=tuple(body.subjects) if body.subjects is not None else None,
        k=body.k,
        quasi_identifiers=(
            tuple(body.quasi_identifiers) if body.quasi_identifiers is not None else None
        ),
    )
    return prepare_export(
        gateway,
        _desk(request),
        principal,
        spec,
        min_k=settings.export_min_k,
        page=settings.export_page_size,
        workers=settings.export_workers,
        # Asked from this worker thread of the event loop's: has the client gone away?
        abandoned=lambda: anyio.from_thread.run(request.is_disconnected),
    )


@router.post(
    "/exports",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/x-ndjson": {}}, "description": "the records"}},
)
def export_dataset(
    body: ExportIn, principal: CurrentPrincipal, gateway: CurrentGateway, request: Request
) -> StreamingResponse:
    """Export a region's subjects under an agreement, as NDJSON, once checked and logged.

    The records are checked for k-anonymity and against the bulk thresholds before the
    first byte is sent; the ledger entry's index, the count and the SHA-256 of the body
    come back as headers.
    """
    prepared = _export(principal, gateway, request, body)
    headers = {
        "Content-Length": str(prepared.size),
        "Domicile-Export-Records": str(prepared.records),
        "Domicile-Export-Sha256": prepared.digest,
        "Domicile-Export-Ledger-Index": str(prepared.ledger_index),
        "Domicile-Export-Agreement": f"{prepared.agreement.id};v={prepared.agreement.version}",
    }
    return StreamingResponse(
        prepared.chunks(),
        media_type="application/x-ndjson",
        headers=headers,
        # Also when the client went away: a stream cut short is recorded as such.
        background=BackgroundTask(finish_export, gateway, prepared),
    )


@router.post("/regions/{region}/tokens:resolve")
def resolve_token(
    region: str,
    body: ResolveIn,
    principal: CurrentPrincipal,
    gateway: CurrentGateway,
    request: Request,
    source_country: SourceCountry = None,
) -> dict[str, Any]:
    """Resolve a token back to its value, in its home region, for an authorised officer."""
    context = _context(source_country, None)
    value = resolve_in_region(
        gateway,
        _desk(request),
        principal,
        region,
        agreement_id=body.agreement,
        field=body.field,
        token=body.token,
        purpose=body.purpose,
        source_country=context.source_country,
    )
    return {"region": region, "field": body.field, "value": value}
