"""Routes for subjects: register, read, update, erase, export, batch read, relocate."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Header, Query, Request, Response, status
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from domicile.api.deps import CurrentGateway, CurrentPrincipal, principal_of, runtime_of
from domicile.api.models import (
    BatchGetBody,
    BatchGetResult,
    ExportBody,
    RegisterBody,
    Registered,
    RelocateBody,
    Relocated,
    SubjectBody,
    UpdateBody,
    Updated,
)
from domicile.api.problems import PROBLEM_TYPE, status_for
from domicile.errors import InvalidInput
from domicile.gateway.pipeline import ReadContext, SubjectView
from domicile.gateway.relocation import relocate
from domicile.principals.store import Principal

router = APIRouter(prefix="/v1", tags=["subjects"])


def _view(view: SubjectView) -> SubjectBody:
    return SubjectBody(
        id=view.id,
        home_region=view.home_region,
        version=view.version,
        fields=view.fields,
        withheld=view.withheld,
    )


def _split(fields: str | None) -> list[str] | None:
    if fields is None:
        return None
    names = [f.strip() for f in fields.split(",") if f.strip()]
    if not names:
        raise InvalidInput("`fields` names no field")
    return names


SOURCE_COUNTRY = (
    "country the request comes from (ISO 3166-1 alpha-2), as measured by a trusted proxy;"
    " it can only narrow what a principal reaches"
)
BREAK_GLASS = "emergency access by an officer; raises an alert at once for review"
SourceCountry = Annotated[
    str | None, Header(alias="Domicile-Source-Country", description=SOURCE_COUNTRY)
]
BreakGlass = Annotated[str | None, Header(alias="Domicile-Break-Glass", description=BREAK_GLASS)]


def _context(source_country: str | None, break_glass: str | None) -> ReadContext:
    if source_country is not None and not (
        len(source_country) == 2 and source_country.isascii() and source_country.isalpha()
    ):
        raise InvalidInput("`Domicile-Source-Country` must be an ISO 3166-1 alpha-2 code")
    flag = (break_glass or "").strip().lower()
    if flag not in {"", "true", "1", "yes"}:
        raise InvalidInput("`Domicile-Break-Glass` must be `true` when given")
    return ReadContext(
        source_country=source_country.upper() if source_country else None,
        break_glass=bool(flag),
    )


def _expected_version(if_match: str | None) -> int | None:
    if if_match is None:
        return None
    tag = if_match.strip().removeprefix("W/").strip('"')
    if not tag.isdigit():
        raise InvalidInput(f'`If-Match` must be a version etag like "3", not `{if_match[:40]}`')
    return int(tag)


@router.post("/subjects", status_code=status.HTTP_201_CREATED, response_model=Registered)
def register(
    body: RegisterBody, principal: CurrentPrincipal, gateway: CurrentGateway, response: Response
) -> Registered:
    """Register a person; their data is stored in the home region of their country."""
    subject_id, region = gateway.register(principal, body.country, body.fields)
    response.headers["Location"] = f"/v1/subjects/{subject_id}"
    return Registered(id=subject_id, home_region=region)


_READ_PARAMETERS = [
    {"name": "purpose", "in": "query", "required": False, "schema": {"type": "string"},
     "description": "declared purpose of the read"},
    {"name": "fields", "in": "query", "required": False, "schema": {"type": "string"},
     "description": "comma-separated field names"},
    {"name": "authorization", "in": "header", "required": False,
     "schema": {"type": "string"}, "description": "Bearer <token>"},
    {"name": "Domicile-Source-Country", "in": "header", "required": False,
     "schema": {"type": "string"}, "description": SOURCE_COUNTRY},
    {"name": "Domicile-Break-Glass", "in": "header", "required": False,
     "schema": {"type": "string"}, "description": BREAK_GLASS},
]  # fmt: skip


@router.get(
    "/subjects/{subject_id}",
    response_class=JSONResponse,
    responses={200: {"model": SubjectBody, "description": "the allowed fields"}},
    openapi_extra={"parameters": _READ_PARAMETERS},
)
async def read(subject_id: str, request: Request) -> JSONResponse:
    """Read a subject's fields for a declared purpose."""
    # The hottest route reads its query and headers itself: FastAPI's per-request
    # parameter resolution cost more than the gateway's own work here (bench/read_path.py).
    # The parameters are documented above, as the other routes' are by their signatures.
    # It runs on the event loop when the stores are local files: its reads are then
    # single indexed lookups of microseconds, and its two durable writes are awaited,
    # not waited for in a worker thread. Worker threads waiting on commits made every
    # commit slow: each GIL hand-back to the committing thread waited for a busy
    # thread's switch interval.
    # On PostgreSQL each lookup is a network round trip, which would hold up the loop
    # and every request behind it, so there the whole read goes to a worker thread.
    runtime = runtime_of(request)
    query, headers = request.query_params, request.headers

    def principal_and_args() -> tuple[Principal, str, list[str] | None, str | None, ReadContext]:
        principal = principal_of(runtime, headers.get("authorization"))  # 401 before 422
        fields = _split(query.get("fields"))
        context = _context(
            headers.get("domicile-source-country"), headers.get("domicile-break-glass")
        )
        return principal, subject_id, fields, query.get("purpose"), context

    if runtime.reads_wait_on_network:
        view = await run_in_threadpool(lambda: runtime.gateway.read(*principal_and_args()))
    else:
        view = await runtime.gateway.read_async(*principal_and_args())
    # Built directly: the hot path skips response-model validation of our own values.
    body = {
        "id": view.id,
        "home_region": view.home_region,
        "version": view.version,
        "fields": view.fields,
        "withheld": view.withheld,
    }
    return JSONResponse(body, headers={"ETag": f'"{view.version}"'})


@router.patch("/subjects/{subject_id}", response_model=Updated)
def update(
    subject_id: str,
    body: UpdateBody,
    principal: CurrentPrincipal,
    gateway: CurrentGateway,
    response: Response,
    if_match: Annotated[str | None, Header()] = None,
) -> Updated:
    """Set fields (null removes one); with If-Match, only if still at that version."""
    version = gateway.update(
        principal, subject_id, body.fields, expected_version=_expected_version(if_match)
    )
    response.headers["ETag"] = f'"{version}"'
    return Updated(id=subject_id, version=version)


@router.delete("/subjects/{subject_id}", status_code=status.HTTP_204_NO_CONTENT)
def erase(subject_id: str, principal: CurrentPrincipal, gateway: CurrentGateway) -> Response:
    """Erase a subject: its data key is destroyed and a tombstone is kept."""
    gateway.erase(principal, subject_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/subjects/{subject_id}/export", response_model=ExportBody)
def export(
    subject_id: str,
    principal: CurrentPrincipal,
    gateway: CurrentGateway,
    purpose: Annotated[str | None, Query()] = "service",
) -> ExportBody:
    """Everything held about a subject."""
    out = gateway.export(principal, subject_id, purpose)
    return ExportBody(**out.__dict__)


@router.post(
    "/subjects:batchGet",
    response_class=Response,
    responses={
        200: {
            "model": BatchGetResult,
            "description": "results in the order of the requested ids",
            "content": {"application/json": {}},
        }
    },
)
def batch_get(
    body: BatchGetBody,
    principal: CurrentPrincipal,
    gateway: CurrentGateway,
    source_country: SourceCountry = None,
    break_glass: BreakGlass = None,
) -> Response:
    """Read many subjects, each decided on its own; per-id errors come back as problems."""
    context = _context(source_country, break_glass)
    results = gateway.batch_get(principal, body.ids, body.fields, body.purpose, context)
    # Built as plain values and encoded once: validating our own thousand items against
    # the response model cost more than the gateway's work on them (bench/batch_read.py).
    # The shape is BatchGetResult's, which the OpenAPI document names and a test checks.
    items: list[dict[str, object]] = []
    for subject_id, result in zip(body.ids, results, strict=True):
        if isinstance(result, SubjectView):
            subject = {
                "id": result.id,
                "home_region": result.home_region,
                "version": result.version,
                "fields": result.fields,
                "withheld": result.withheld,
            }
            items.append({"id": subject_id, "subject": subject, "error": None})
        else:
            error = {
                "type": PROBLEM_TYPE + result.code,
                "title": result.title,
                "status": status_for(result),
                "detail": str(result),
                "code": result.code,
            }
            items.append({"id": subject_id, "subject": None, "error": error})
    return Response(orjson.dumps({"items": items}), media_type="application/json")


@router.post("/subjects/{subject_id}:relocate", response_model=Relocated)
def relocate_subject(
    subject_id: str, body: RelocateBody, principal: CurrentPrincipal, gateway: CurrentGateway
) -> Relocated:
    """Move a subject whose country changed to its new home region (copy, verify, shred)."""
    region = relocate(gateway, principal, subject_id, body.country)
    return Relocated(id=subject_id, home_region=region)
