"""`/v1/triggers`: the configured triggers, what each has done, and redriving dead letters.

A trigger's dead letters are its jobs whose last attempt failed: they are listed by
`GET /v1/jobs?status=failed&source=trigger:NAME` and re-queued by `POST .../{name}/redrive`.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from autoinfer.api.auth import require_key
from autoinfer.errors import Conflict, NotFound

router = APIRouter(prefix="/v1/triggers", tags=["triggers"], dependencies=[Depends(require_key)])


class TriggerInfo(BaseModel):
    name: str
    bucket: str
    prefix: str
    suffix: str
    events: list[str]
    kind: Literal["rule", "handler"]
    handler: str | None = None
    job: dict[str, Any] | None = None
    counts: dict[str, int]


class TriggerList(BaseModel):
    triggers: list[TriggerInfo]


@router.get("", response_model=TriggerList)
def list_triggers(request: Request) -> TriggerList:
    """Every trigger with the number of events it matched (job created) and failed on."""
    infos = request.app.state.service.pipeline.trigger_infos()
    return TriggerList(triggers=[TriggerInfo(**info) for info in infos])


class Redriven(BaseModel):
    """What a redrive did: the dead letters put back in the queue, each as a new attempt."""

    trigger: str
    requeued: int
    job_ids: list[str]


@router.post("/{name}/redrive", response_model=Redriven)
def redrive_trigger(request: Request, name: str) -> Redriven:
    """Re-queue every failed job the trigger created (as `POST /v1/jobs/{id}/retry` does for
    one); 404 for an unknown trigger."""
    service = request.app.state.service
    if name not in {trigger.name for trigger in service.pipeline.triggers}:
        raise NotFound(f"trigger {name!r}: no such trigger")
    job_ids = redrive_dead_letters(service, name)
    return Redriven(trigger=name, requeued=len(job_ids), job_ids=job_ids)


def redrive_dead_letters(service: Any, trigger: str, page_size: int = 500) -> list[str]:
    """Retry each job of `trigger:<trigger>` that is `failed`; the ids retried. A job that
    changed meanwhile (retried by someone else) is skipped, and none is retried twice."""
    requeued: list[str] = []
    seen: set[str] = set()
    while True:
        page, _ = service.jobs.list(status="failed", source=f"trigger:{trigger}", limit=page_size)
        fresh = [job.id for job in page if job.id not in seen]
        if not fresh:
            return requeued
        for job_id in fresh:
            seen.add(job_id)
            try:
                service.retry_job(job_id)
            except Conflict:
                continue
            requeued.append(job_id)
