"""What list endpoints return: records without their stored payloads.

`GET /v1/jobs` and `GET /v1/events` answer summaries, so a page of 1000 items costs what its
columns cost, never 1000 job specs or raw event records. The detail routes
(`GET /v1/jobs/{id}`, `GET /v1/events/{id}`) keep `spec` and `raw`. A job summary carries the
spec's input and output URIs, which lists show.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from autoinfer.inbox import DispatchRecord, EventRecord
from autoinfer.jobs.records import JobRecord, Progress, TransitionRecord

#: The longest URI a summary repeats from a spec (specs are capped, but not this tightly).
MAX_SUMMARY_URI = 2048


class JobSummary(BaseModel):
    """A job as lists show it: `JobRecord` without `spec`, with its input and output URIs."""

    id: str
    name: str
    status: str
    attempt: int
    max_attempts: int
    reason: str | None
    source: str
    event_id: str | None
    created_at: datetime
    updated_at: datetime
    progress: Progress | None
    output_location: str | None
    model_info: dict[str, Any] | None
    stop_requested: bool
    input_uri: str | None
    output_uri: str | None
    transitions: list[TransitionRecord]

    @classmethod
    def of(cls, job: JobRecord) -> JobSummary:
        data = job.spec.get("data") if isinstance(job.spec, dict) else None
        data = data if isinstance(data, dict) else {}
        return cls(
            **job.model_dump(exclude={"spec"}),
            input_uri=_uri(data.get("input_uri")),
            output_uri=_uri(data.get("output_uri")),
        )


class EventSummary(BaseModel):
    """An event as lists show it: `EventRecord` without `raw` (the stored record)."""

    id: int
    source: str
    outcome: str
    reason: str | None
    bucket: str | None
    key: str | None
    event_name: str | None
    event_time: datetime | None
    size: int | None
    etag: str | None
    version_id: str | None
    sequencer: str | None
    flavour: str | None
    idempotency_key: str | None
    received_at: datetime
    trigger: str | None
    job_id: str | None
    duplicate_of: int | None
    deliveries: int
    dispatches: list[DispatchRecord]
    body_excerpt: str | None

    @classmethod
    def of(cls, event: EventRecord) -> EventSummary:
        return cls(**{name: getattr(event, name) for name in cls.model_fields})


def _uri(value: object) -> str | None:
    return value[:MAX_SUMMARY_URI] if isinstance(value, str) else None
