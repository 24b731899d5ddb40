"""`/v1/events`: the S3-format webhook (`POST /v1/events/s3`) and the event log (`GET`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from autoinfer.api.auth import require_key
from autoinfer.api.limits import MAX_DB_INT
from autoinfer.api.summaries import EventSummary
from autoinfer.errors import EventError
from autoinfer.events.model import parse_notification
from autoinfer.events.webhook import MAX_BODY_BYTES, authenticate
from autoinfer.inbox import EventRecord, Outcome

router = APIRouter(prefix="/v1/events", tags=["events"])


class EventList(BaseModel):
    events: list[EventSummary]
    total: int


class Received(BaseModel):
    """The webhook's answer: what became of each stored record, in the order sent, and the
    records that could not be stored (`index` in `Records`, `reason`, the `id` of the
    `rejected` event that records it). A body with no storable record at all is a 400."""

    received: int
    test_event: bool = False
    events: list[dict[str, Any]]
    rejected: list[dict[str, Any]] = []


@router.post("/s3", response_model=Received)
async def receive_s3_notification(request: Request) -> Received:
    """Store an S3 / MinIO / Ceph notification; 2xx only once its events are committed.

    Authenticated by the webhook source's token (`Authorization: Bearer <token>`, or an
    `X-AutoInfer-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">` header),
    or by the API key when no webhook source has a token.
    """
    service = request.app.state.service
    pipeline = service.pipeline
    body = await _read_body(request)
    source = authenticate(
        pipeline.webhook_sources,
        request.headers,
        body,
        resolve=getattr(service, "resolve_secret", None),
        check_api_key=service.check_api_key,
        insecure=service.insecure,
    )
    try:
        notification = parse_notification(body)
    except EventError as error:
        await run_in_threadpool(pipeline.reject, source, body, str(error))
        raise
    if notification.test_event:
        return Received(received=0, test_event=True, events=[])
    # In a worker thread: handler triggers call back into this API through the SDK.
    records = await run_in_threadpool(pipeline.ingest, notification.events, source)
    # Good records stored, bad ones recorded as rejected: a 2xx, so that a sender retrying
    # anything else (MinIO) does not resend the good ones forever for the sake of a bad one.
    rejected = await run_in_threadpool(pipeline.reject_records, source, notification.rejected)
    return Received(
        received=len(records),
        rejected=[
            {"index": bad.index, "reason": bad.reason, "id": stored.id}
            for bad, stored in zip(notification.rejected, rejected, strict=True)
        ],
        events=[
            {
                "id": r.id,
                "outcome": r.outcome,
                "reason": r.reason,
                "duplicate_of": r.duplicate_of,
                "trigger": r.trigger,
                "job_id": r.job_id,
            }
            for r in records
        ],
    )


@router.get("", response_model=EventList, dependencies=[Depends(require_key)])
def list_events(
    request: Request,
    outcome: Outcome | None = None,
    source: str | None = None,
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=MAX_DB_INT),
) -> EventList:
    """Events newest first, with what became of each (the job it started, or why none);
    summaries without the stored record (`GET /v1/events/{id}` has it as `raw`)."""
    events, total = request.app.state.service.pipeline.inbox.list(
        limit=limit, offset=offset, outcome=outcome.value if outcome else None, source=source
    )
    return EventList(events=[EventSummary.of(event) for event in events], total=total)


@router.get("/{event_id}", response_model=EventRecord, dependencies=[Depends(require_key)])
def get_event(request: Request, event_id: int = Path(ge=0, le=MAX_DB_INT)) -> EventRecord:
    return request.app.state.service.pipeline.inbox.get(event_id)


async def _read_body(request: Request) -> bytes:
    """The request body, refused past MAX_BODY_BYTES without reading the rest."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise EventError(f"body is {declared} bytes; at most {MAX_BODY_BYTES} accepted")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise EventError(f"body is larger than {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
