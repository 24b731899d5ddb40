"""What a notification says: the Standard Webhooks body of a job's end (pure, no I/O).

```json
{"type": "job.finished", "timestamp": "2026-12-04T17:40:44.123Z",
 "data": {"id": "...", "name": "images-X", "status": "finished", "reason": null, "attempt": 1,
          "source": "trigger:classify-incoming", "trigger": "classify-incoming",
          "input_uri": "s3://data/incoming/images-X.zip", "output_uri": "s3://data/processed",
          "output_location": "s3://data/processed/images-X.zip",
          "items": {"ok": 4, "error": 1}, "model": {...},
          "event": {"id": 12, "bucket": "data", "key": "incoming/images-X.zip", ...},
          "created_at": "...", "ended_at": "..."}}
```
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any, Protocol

from autoinfer.jobs.items import ItemCounts


class EndedJob(Protocol):
    """The columns of a job row the body is made of (an ORM row or a Core row)."""

    id: str
    name: str
    status: str
    reason: str | None
    attempt: int
    source: str
    event_id: str | None
    spec: dict[str, Any]
    output_location: str | None
    model_info: dict[str, Any] | None
    created_at: datetime


def event_type(status: str) -> str:
    """`finished` → `job.finished`."""
    return f"job.{status}"


def new_webhook_id() -> str:
    """A notification's `webhook-id`: unique, fixed for all its delivery attempts."""
    return f"msg_{uuid.uuid4().hex}"


def timestamp(moment: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and a `Z`."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def job_end_body(
    job: EndedJob,
    *,
    items: ItemCounts | None,
    event: dict[str, Any] | None,
    now: datetime,
) -> str:
    """The JSON body (compact, exactly the bytes that are signed and sent) of `job`'s end."""
    spec = job.spec or {}
    data = spec.get("data") or {}
    source = job.source or ""
    trigger = source.removeprefix("trigger:") if source.startswith("trigger:") else None
    document = {
        "type": event_type(job.status),
        "timestamp": timestamp(now),
        "data": {
            "id": job.id,
            "name": job.name,
            "status": job.status,
            "reason": job.reason if job.status != "finished" else None,
            "attempt": job.attempt,
            "source": source,
            "trigger": trigger,
            "input_uri": data.get("input_uri"),
            "output_uri": data.get("output_uri"),
            "output_location": job.output_location,
            "items": (items or ItemCounts()).model_dump(),
            "model": job.model_info or spec.get("model"),
            "event": event,
            "created_at": timestamp(job.created_at) if job.created_at else None,
            "ended_at": timestamp(now),
        },
    }
    return json.dumps(document, separators=(",", ":"), default=str)
