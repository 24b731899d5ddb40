"""The FastAPI application: routers per resource, error format, service lifecycle."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI

from autoinfer import __version__
from autoinfer.api import admin, events, health, items, jobs, notifications, status, triggers
from autoinfer.api import overview as overview_api
from autoinfer.api.errors import install_error_handlers
from autoinfer.api.follow import FollowStreams
from autoinfer.api.gate import RequestGate
from autoinfer.api.headers import SecurityHeaders
from autoinfer.api.limits import LimitsConfig
from autoinfer.dashboard import routes as dashboard

if TYPE_CHECKING:
    from autoinfer.service import AutoInferService


def create_app(service: AutoInferService, *, manage_lifecycle: bool = True) -> FastAPI:
    """The app serving `service`; with `manage_lifecycle` it starts and stops the service too."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if manage_lifecycle:
            service.start()
        try:
            yield
        finally:
            if manage_lifecycle:
                service.stop()

    app = FastAPI(
        title="autoinfer",
        version=__version__,
        description="New data in a bucket becomes predictions next to it.",
        lifespan=lifespan,
    )
    app.state.service = service
    install_error_handlers(app)
    limits = getattr(getattr(service, "config", None), "limits", None) or LimitsConfig()
    app.state.follow = FollowStreams(limits)
    # The last added runs first: headers on every answer, then the gate before any body.
    app.add_middleware(RequestGate, fastapi_app=app, limits=limits)
    app.add_middleware(SecurityHeaders)
    app.include_router(health.router)
    app.include_router(jobs.router)
    app.include_router(items.router)
    app.include_router(notifications.router)
    app.include_router(admin.router)
    app.include_router(events.router)
    app.include_router(triggers.router)
    app.include_router(status.router)
    app.include_router(overview_api.router)
    app.include_router(dashboard.router)
    return app
