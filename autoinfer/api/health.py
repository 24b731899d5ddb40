"""`/healthz` (no key needed) and `/metrics` (Prometheus text format)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse

from autoinfer import __version__
from autoinfer.api import metrics

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz(request: Request) -> dict:
    service = request.app.state.service
    service.jobs.counts_by_status()  # proves the database answers
    return {"status": "ok", "version": __version__, "executor": service.executor.stats()}


@router.get("/metrics", response_class=PlainTextResponse)
def prometheus_metrics(request: Request) -> PlainTextResponse:
    body, content_type = metrics.render(request.app.state.service)
    return PlainTextResponse(body, media_type=content_type)
