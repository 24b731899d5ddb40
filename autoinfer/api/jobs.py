"""`/v1/jobs`: create, list, get, logs (optionally followed), stop and retry."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Body, Depends, Header, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel
from starlette.types import Receive, Scope, Send

from autoinfer.api.auth import require_key
from autoinfer.api.limits import MAX_DB_INT
from autoinfer.api.summaries import JobSummary
from autoinfer.errors import NotFound
from autoinfer.jobs.records import JobRecord, LogLine
from autoinfer.jobs.spec import JobSpec, Status, parse_spec

if TYPE_CHECKING:
    from autoinfer.service import AutoInferService

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], dependencies=[Depends(require_key)])


class JobList(BaseModel):
    jobs: list[JobSummary]
    total: int


class LogPage(BaseModel):
    lines: list[LogLine]
    status: str


def _service(request: Request) -> AutoInferService:
    service: AutoInferService = request.app.state.service
    return service


@router.post(
    "",
    status_code=201,
    response_model=JobRecord,
    openapi_extra={
        "requestBody": {"content": {"application/json": {"schema": JobSpec.model_json_schema()}}}
    },
)
def create_job(
    request: Request,
    payload: Any = Body(...),
    idempotency_key: str | None = Header(default=None, alias="Idempotency-Key"),
) -> JobRecord:
    """Create a job from a job spec. With `Idempotency-Key`, repeating the call is a no-op."""
    spec = parse_spec(payload)
    job, _ = _service(request).create_job(
        spec,
        idempotency_key=idempotency_key,
        principal=getattr(request.state, "principal", None),
    )
    return job


@router.get("", response_model=JobList)
def list_jobs(
    request: Request,
    status: Status | None = None,
    name: str | None = None,
    source: str | None = None,
    limit: int = Query(50, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=MAX_DB_INT),
) -> JobList:
    """Jobs newest first, as summaries (`GET /v1/jobs/{id}` has the spec)."""
    jobs, total = _service(request).jobs.list(
        status=status.value if status else None,
        name=name,
        source=source,
        limit=limit,
        offset=offset,
    )
    return JobList(jobs=[JobSummary.of(job) for job in jobs], total=total)


@router.get("/{job_id}", response_model=JobRecord)
def get_job(request: Request, job_id: str) -> JobRecord:
    return _service(request).jobs.get(job_id)


@router.get("/{job_id}/logs", response_model=LogPage)
def job_logs(
    request: Request,
    job_id: str,
    after: int = Query(0, ge=0, le=MAX_DB_INT, description="only lines with an id above this"),
    follow: bool = Query(False, description="stream lines as NDJSON until the job ends"),
    limit: int = Query(10_000, ge=1, le=100_000),
) -> LogPage | FollowResponse:
    service = _service(request)
    job = service.jobs.get(job_id)  # 404 before streaming starts
    if not follow:
        return LogPage(lines=service.jobs.logs(job_id, after=after, limit=limit), status=job.status)
    principal = getattr(request.state, "principal", None)
    who = principal.id or principal.name if principal else f"client {_client_host(request)}"
    release = request.app.state.follow.acquire(who)  # 429 when no stream slot is left
    return FollowResponse(_follow(request, job_id, after), release)


class FollowResponse(StreamingResponse):
    """An NDJSON log stream that gives its slot back however it ends."""

    def __init__(self, content: AsyncIterator[bytes], release: Callable[[], None]) -> None:
        super().__init__(content, media_type="application/x-ndjson")
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()


def _client_host(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def _follow(request: Request, job_id: str, after: int) -> AsyncIterator[bytes]:
    """Each new log line as one JSON object per line; a final `{"status": ...}` when it ends."""
    jobs = _service(request).jobs
    streams = request.app.state.follow
    while True:
        lines = await asyncio.to_thread(jobs.logs, job_id, after=after, limit=1000)
        for line in lines:
            after = line.id
            yield (line.model_dump_json() + "\n").encode()
        if lines:
            continue
        job = await asyncio.to_thread(jobs.get, job_id)
        if job.terminal:
            # Drain what was written between the last read and the status change.
            for line in await asyncio.to_thread(jobs.logs, job_id, after=after):
                yield (line.model_dump_json() + "\n").encode()
            yield (json.dumps({"status": job.status, "reason": job.reason}) + "\n").encode()
            return
        # Woken by the shared watcher when the job moves; a blank line every 15 s of quiet
        # keeps the connection alive through proxies. A client that leaves cancels this.
        if not await streams.wait(jobs.db, job_id, after, job.status, timeout=15):
            yield b"\n"


@router.post("/{job_id}/stop", response_model=JobRecord)
def stop_job(request: Request, job_id: str) -> JobRecord:
    """Stop a job: SIGTERM then SIGKILL to its process tree; `stopped` once it is gone."""
    return _service(request).stop_job(job_id)


@router.post("/{job_id}/retry", response_model=JobRecord)
def retry_job(request: Request, job_id: str) -> JobRecord:
    """Run a failed or stopped job again as a new attempt."""
    return _service(request).retry_job(job_id)


@router.get("/{job_id}/gallery")
def job_gallery(request: Request, job_id: str) -> dict:
    """A classifier job's predictions, each with a thumbnail of its image when it decoded."""
    service = _service(request)
    service.jobs.get(job_id)
    return {"items": service.gallery.items(job_id)}


@router.get("/{job_id}/gallery/{name}", response_class=Response)
def job_thumbnail(request: Request, job_id: str, name: str) -> Response:
    service = _service(request)
    service.jobs.get(job_id)  # 404 for anything that is not a job's id ('..' included)
    # Only a name the gallery wrote, read from the job's own regular files (no link followed).
    jpeg = service.gallery.thumbnail(job_id, name)
    if jpeg is None:
        raise NotFound(f"job {job_id}: no thumbnail {name!r}")
    return Response(
        jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"}
    )
