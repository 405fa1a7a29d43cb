"""Dependencies shared by the routes: the runtime and the authenticated principal."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request
from starlette.concurrency import run_in_threadpool

from domicile.errors import AuthenticationError
from domicile.gateway.pipeline import Gateway
from domicile.principals.store import Principal
from domicile.runtime import Runtime

# These dependencies are `async def` so FastAPI runs them on the event loop instead of
# a worker thread: each thread hop costs more than the work they do. `authenticate`
# does one indexed read: on SQLite microseconds, on the loop; on PostgreSQL a network
# round trip, in a worker thread, so that it holds up no other request.


async def get_gateway(request: Request) -> Gateway:
    """The gateway of the running app."""
    runtime: Runtime = request.app.state.runtime
    return runtime.gateway


async def authenticate(
    request: Request,
    authorization: Annotated[str | None, Header(description="Bearer <token>")] = None,
) -> Principal:
    """Authenticate the caller from `Authorization: Bearer <token>`."""
    runtime: Runtime = request.app.state.runtime
    if runtime.reads_wait_on_network:
        return await run_in_threadpool(principal_of, runtime, authorization)
    return principal_of(runtime, authorization)


def principal_of(runtime: Runtime, authorization: str | None) -> Principal:
    """The principal an `Authorization: Bearer <token>` header value names."""
    if authorization is None:
        raise AuthenticationError("an `Authorization: Bearer <token>` header is required")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationError("authorization must use the bearer scheme")
    return runtime.gateway.authenticate(token.strip())


CurrentPrincipal = Annotated[Principal, Depends(authenticate)]
CurrentGateway = Annotated[Gateway, Depends(get_gateway)]


def runtime_of(request: Request) -> Runtime:
    """The runtime, from inside a route."""
    runtime: Runtime = request.app.state.runtime
    return runtime
