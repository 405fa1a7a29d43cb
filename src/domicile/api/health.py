"""Operations probes: liveness (`/healthz`) and readiness (`/readyz`) for a load balancer
or an orchestrator. Neither needs a token, and neither says anything about a subject."""

from __future__ import annotations

from fastapi import APIRouter, Request

from domicile.api.deps import runtime_of
from domicile.api.problems import MEDIA_TYPE
from domicile.errors import StorageError

router = APIRouter(tags=["operations"])

READY_TIMEOUT = 2.0
"""Seconds the stores have to answer a readiness check; a store silent longer counts as
down (a load balancer's own check usually gives up after a few seconds)."""


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """Liveness: the process is up (it may still wait for its databases)."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    responses={
        503: {"description": "a store did not answer (problem details)",
              "content": {MEDIA_TYPE: {}}},
    },
)  # fmt: skip
def readyz(request: Request) -> dict[str, str]:
    """Readiness: every database this gateway serves from answers; otherwise 503, naming
    the stores that did not (a region's vault or log, the control data, …)."""
    failed = runtime_of(request).unanswered_stores(READY_TIMEOUT)
    if failed:
        raise StorageError(f"not ready: no answer from {', '.join(failed)}")
    return {"status": "ready"}
