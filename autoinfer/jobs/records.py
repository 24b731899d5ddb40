"""Read models of jobs, shared by the service, the HTTP API and the SDK."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from autoinfer.jobs.items import ItemCounts


class TransitionRecord(BaseModel):
    status: str
    attempt: int
    at: datetime
    reason: str | None = None


class Progress(BaseModel):
    done: int
    total: int


class JobFields(BaseModel):
    """What every view of a job shows: status, history and result (`JobRecord` adds the spec;
    lists show `api.summaries.JobSummary`)."""

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
    transitions: list[TransitionRecord]
    # Per-item results: how many input items ended ok and in error (None: none recorded).
    items: ItemCounts | None = None


class JobRecord(JobFields):
    """A job as users see it: its spec, status, history and result."""

    spec: dict[str, Any]

    @property
    def terminal(self) -> bool:
        return self.status in ("finished", "failed", "stopped")

    def status_times(self) -> dict[str, datetime]:
        """When the job last entered each status."""
        return {t.status: t.at for t in self.transitions}


class LogLine(BaseModel):
    id: int
    at: datetime
    stream: str
    line: str
