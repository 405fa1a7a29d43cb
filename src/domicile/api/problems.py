"""RFC 9457 problem details: the one mapping from Domicile errors to HTTP responses."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from domicile import errors

log = logging.getLogger("domicile.api")

PROBLEM_TYPE = "urn:domicile:problem:"
MEDIA_TYPE = "application/problem+json"

# Most specific class first: the first match wins.
_STATUS: list[tuple[type[errors.DomicileError], int]] = [
    (errors.PayloadTooLarge, 413),
    (errors.InvalidFieldValue, 422),
    (errors.InvalidInput, 400),
    (errors.AuthenticationError, 401),
    (errors.AccessDenied, 403),
    (errors.NotFound, 404),
    (errors.SubjectErased, 410),
    (errors.VersionMismatch, 412),
    (errors.Conflict, 409),
    (errors.RecordingFailed, 503),
    (errors.StorageError, 503),
    (errors.ConfigError, 422),
    (errors.RequestAbandoned, 499),  # nobody reads it: the client closed the connection
]


def status_for(exc: errors.DomicileError) -> int:
    """The HTTP status of a Domicile error."""
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def problem(
    status: int, code: str, title: str, detail: str, instance: str | None = None
) -> JSONResponse:
    """Build a problem-details response."""
    body: dict[str, object] = {
        "type": PROBLEM_TYPE + code,
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if instance:
        body["instance"] = instance
    headers = {"WWW-Authenticate": 'Bearer realm="domicile"'} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


async def _domicile_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.DomicileError)
    status = status_for(exc)
    if status >= 500:
        # The message is ours and carries no personal data (only ids and names).
        log.error("%s on %s %s: %s", exc.code, request.method, request.url.path, exc)
    return problem(status, exc.code, exc.title, str(exc), request.url.path)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # Pydantic echoes the rejected input; we keep only where and what, never the value.
    parts = []
    for err in exc.errors()[:10]:
        where = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(f"`{where}`: {err.get('msg', 'invalid')}".lower())
    detail = "; ".join(parts) or "request is not valid"
    return problem(
        400, errors.InvalidInput.code, errors.InvalidInput.title, detail, request.url.path
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
    return problem(
        exc.status_code, code, str(exc.detail).lower(), str(exc.detail).lower(), request.url.path
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("internal error on %s %s: %s", request.method, request.url.path, type(exc).__name__)
    return problem(
        500,
        "internal-error",
        "internal error",
        "the server failed; nothing was changed",
        request.url.path,
    )


def install(app: FastAPI) -> None:
    """Register the problem-details handlers on an app."""
    app.add_exception_handler(errors.DomicileError, _domicile_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
