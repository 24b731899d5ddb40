"""`GET /v1/status`: the service at a glance — health, sources, triggers, queue, workers.

What `autoinfer status` prints. Job and event counts are database-wide (every replica sharing
the database sees the same); the executor and the predictor workers are this replica's.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from autoinfer import __version__
from autoinfer.api.auth import require_key
from autoinfer.inbox import Outcome
from autoinfer.jobs.spec import Status

router = APIRouter(prefix="/v1/status", tags=["status"], dependencies=[Depends(require_key)])


class SourceStatus(BaseModel):
    name: str
    type: str
    store: str | None = None


class TriggerStatus(BaseModel):
    name: str
    bucket: str
    prefix: str
    suffix: str
    kind: str
    matched: int
    failed: int


class QueueStatus(BaseModel):
    """Database-wide counts."""

    new: int  # jobs waiting to be claimed
    inbox_pending: int  # events stored, not yet dispatched
    jobs: dict[str, int]  # by status
    events: dict[str, int]  # by outcome


class DiskStatus(BaseModel):
    """This replica's data folder and the disk that holds it."""

    data_dir: str
    used_bytes: int  # by the data folder (measured at most once a minute)
    free_bytes: int  # on its disk
    total_bytes: int
    nearly_full: bool  # under 5 % or 1 GiB free


class ServiceStatus(BaseModel):
    status: str
    version: str
    replica: str
    database: str
    sources: list[SourceStatus]
    triggers: list[TriggerStatus]
    queue: QueueStatus
    executor: dict[str, int]
    workers: dict[str, Any] | None  # the warm predictor pool; None until a built-in job ran
    disk: DiskStatus | None = None


def service_status(service: Any) -> ServiceStatus:
    """Read the service's state (one query per table; no side effects)."""
    pipeline = service.pipeline
    jobs = service.jobs.counts_by_status()
    events: dict[str, int] = {}
    for (_, outcome), count in pipeline.metrics_counts().items():
        events[outcome] = events.get(outcome, 0) + count
    sources = [
        SourceStatus(name=source.name, type=config.type, store=config.store)
        for config, source in zip(service.config.sources, pipeline.sources, strict=False)
    ]
    triggers = [
        TriggerStatus(
            name=info["name"],
            bucket=info["bucket"],
            prefix=info["prefix"],
            suffix=info["suffix"],
            kind=info["kind"],
            matched=info["counts"]["matched"],
            failed=info["counts"]["failed"],
        )
        for info in pipeline.trigger_infos()
    ]
    pool = getattr(service, "_predictors", None)  # not started by asking
    return ServiceStatus(
        status="ok",
        version=__version__,
        replica=service.executor.owner,
        database=service.db.engine.dialect.name,
        sources=sources,
        triggers=triggers,
        queue=QueueStatus(
            new=jobs.get(Status.NEW.value, 0),
            inbox_pending=events.get(Outcome.PENDING.value, 0),
            jobs={status.value: jobs.get(status.value, 0) for status in Status},
            events=events,
        ),
        executor=service.executor.stats(),
        workers=pool.stats() if pool is not None else None,
        disk=_disk_status(service),
    )


def _disk_status(service: Any) -> DiskStatus:
    space = service.data_usage.space()
    return DiskStatus(
        data_dir=str(service.data_dir),
        used_bytes=service.data_usage.bytes(),
        free_bytes=space.free_bytes,
        total_bytes=space.total_bytes,
        nearly_full=space.nearly_full,
    )


@router.get("", response_model=ServiceStatus)
def get_status(request: Request) -> ServiceStatus:
    """Health, sources, triggers, queue and workers of the replica that answers."""
    return service_status(request.app.state.service)
