"""The FastAPI application: `create_app(settings)` wires everything, nothing at import."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from domicile import __version__
from domicile.api import admin, grants, health, ledger, metrics, problems, subjects, transfers
from domicile.api.limits import BodyLimit
from domicile.console import web as console
from domicile.heap import long_lived_heap
from domicile.runtime import Runtime, open_runtime
from domicile.settings import Settings


def create_app(settings: Settings, runtime: Runtime | None = None) -> FastAPI:
    """Build the app; it opens its runtime at start-up unless one is given."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = runtime is None
        app.state.runtime = runtime if runtime is not None else open_runtime(settings)
        try:
            with long_lived_heap():  # start-up's objects live as long as the app
                yield
        finally:
            if owned:
                app.state.runtime.close()

    app = FastAPI(
        title="Domicile",
        version=__version__,
        summary="Personal data kept in its home region, reached only through this gateway",
        lifespan=lifespan,
    )
    problems.install(app)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.include_router(subjects.router)
    app.include_router(admin.router)
    app.include_router(ledger.router)
    app.include_router(grants.router)
    app.include_router(transfers.router)
    app.include_router(console.router)
    app.include_router(health.router)
    metrics.install(app)  # outermost middleware: it counts every answer, a 413 too

    return app
