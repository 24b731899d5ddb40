"""The inbox's read models (what API, SDK and CLI show of an event) and what a settlement
hands back to it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from autoinfer.inbox.tables import Outcome


class DispatchRecord(BaseModel):
    trigger: str
    job_id: str | None
    error: str | None
    at: datetime


class EventFields(BaseModel):
    """What every view of an event shows (`EventRecord` adds the stored record, `raw`; lists
    show these fields alone)."""

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


class EventRecord(EventFields):
    """An event as users see it (API, SDK, CLI): what arrived and what became of it."""

    raw: dict[str, Any] | None


@dataclass(frozen=True)
class Dispatch:
    """The result of one trigger on one event, part of its `Settlement`."""

    trigger: str
    job_id: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class Settlement:
    """How one event was settled, handed to `Inbox.mark_many`."""

    event_id: int
    outcome: Outcome
    reason: str | None = None
    dispatches: tuple[Dispatch, ...] = ()

    @property
    def first_dispatch(self) -> Dispatch | None:
        """The dispatch the event row names: the first that made a job, else the first."""
        made_job = next((d for d in self.dispatches if d.job_id is not None), None)
        return made_job or (self.dispatches[0] if self.dispatches else None)


def to_record(row: Any, dispatches: Sequence[Any] | None = None) -> EventRecord:
    """The read model of an event row (an ORM row with its dispatches, or a Core row and its
    dispatch rows given apart)."""
    return EventRecord(
        id=row.id,
        source=row.source,
        outcome=row.outcome,
        reason=row.reason,
        bucket=row.bucket,
        key=row.key,
        event_name=row.event_name,
        event_time=row.event_time,
        size=row.size,
        etag=row.etag,
        version_id=row.version_id,
        sequencer=row.sequencer,
        flavour=row.flavour,
        idempotency_key=row.idempotency_key,
        received_at=row.received_at,
        trigger=row.trigger,
        job_id=row.job_id,
        duplicate_of=row.duplicate_of,
        deliveries=row.deliveries,
        dispatches=[
            DispatchRecord(trigger=d.trigger, job_id=d.job_id, error=d.error, at=d.at)
            for d in (row.dispatches if dispatches is None else dispatches)
        ],
        raw=row.raw,
        body_excerpt=row.body_excerpt,
    )
