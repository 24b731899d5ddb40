"""The inbox: a durable, deduplicated log of every storage event the service received.

An event is committed here before any source acknowledges it. Its idempotency key (bucket,
key, version id or ETag) is unique among first deliveries, so a repeated delivery, from the
same source or another one, is stored as a `duplicate` row pointing at the original and
starts nothing. A `Settlement` records what became of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Connection,
    bindparam,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.orm import selectinload

from autoinfer.errors import NotFound
from autoinfer.events.model import (
    S3Event,
)
from autoinfer.events.stored_record import stored_record
from autoinfer.inbox.records import EventRecord, Settlement, to_record
from autoinfer.inbox.tables import DispatchRow, EventRow, Outcome
from autoinfer.orm import utcnow

if TYPE_CHECKING:
    from autoinfer.db import Database


#: How much of a rejected body is kept for the operator to look at.
EXCERPT_CHARS = 2000


class Inbox:
    """Records events durably and exactly once per idempotency key; lists and counts them."""

    def __init__(self, db: Database) -> None:
        self.db = db
        # The insert comes first so that the transaction takes the write lock at once and a
        # concurrent delivery of the same event waits for it, then conflicts. Built once: it
        # runs for every event.
        self._insert_first = (
            db.insert()(EventRow)
            .on_conflict_do_nothing(index_elements=["dedup_key"])
            .returning(EventRow.id)
        )

    def record(self, events: Sequence[S3Event], source: str) -> list[EventRecord]:
        """Commit every event (new ones `pending`, repeated ones `duplicate`) in one transaction.

        Returns the records in the order given, once they are committed.
        """
        if not events:
            return []
        now = utcnow()
        ids: list[int] = [0] * len(events)
        # In key order, so that replicas recording overlapping batches at once wait for each
        # other on the unique index in the same order, and never deadlock.
        order = sorted(range(len(events)), key=lambda i: events[i].idempotency_key or "")
        with self.db.connection() as connection:
            for index in order:
                event = events[index]
                values = _event_values(event, source, now)
                new_id = connection.scalar(
                    self._insert_first,
                    {
                        "dedup_key": event.idempotency_key,
                        "outcome": Outcome.PENDING.value,
                        **values,
                    },
                )
                ids[index] = (
                    new_id if new_id is not None else _record_duplicate(connection, event, values)
                )
        return self.get_many(ids)

    def record_rejected(self, source: str, body: bytes | str, reason: str) -> EventRecord:
        """Keep a trace of a body that could not be parsed: its first characters and why."""
        text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
        row = EventRow(
            source=source,
            outcome=Outcome.REJECTED.value,
            reason=reason,
            received_at=utcnow(),
            body_excerpt=text[:EXCERPT_CHARS],
        )
        with self.db.session() as session:
            session.add(row)
            session.flush()
            event_id = row.id
        return self.get(event_id)

    def mark_many(self, settlements: Sequence[Settlement]) -> list[bool]:
        """Settle pending events in one transaction; for each, False (and nothing written for
        it) if it was settled already."""
        now = utcnow()
        results: list[bool] = []
        dispatch_rows: list[dict[str, Any]] = []
        with self.db.connection() as connection:
            for settlement in settlements:
                first = settlement.first_dispatch
                moved = connection.execute(
                    _SETTLE,
                    {
                        "event_id": settlement.event_id,
                        "new_outcome": settlement.outcome.value,
                        "new_reason": settlement.reason,
                        "first_trigger": first.trigger if first else None,
                        "first_job_id": first.job_id if first else None,
                    },
                )
                results.append(moved.rowcount == 1)
                if moved.rowcount == 1:
                    dispatch_rows += (
                        {
                            "event_id": settlement.event_id,
                            "trigger": d.trigger,
                            "job_id": d.job_id,
                            "error": d.error,
                            "at": now,
                        }
                        for d in settlement.dispatches
                    )
            if dispatch_rows:
                connection.execute(_INSERT_DISPATCH, dispatch_rows)
        return results

    def get(self, event_id: int) -> EventRecord:
        with self.db.session() as session:
            row = session.scalars(
                select(EventRow)
                .where(EventRow.id == event_id)
                .options(selectinload(EventRow.dispatches))
            ).first()
            if row is None:
                raise NotFound(f"event {event_id}: no such event")
            return to_record(row)

    def get_many(self, ids: Sequence[int]) -> list[EventRecord]:
        """The records of `ids`, in that order."""
        unique = sorted(set(ids))
        dispatches: dict[int, list[Any]] = {event_id: [] for event_id in unique}
        with self.db.connection() as connection:
            rows = connection.execute(_EVENTS_BY_ID, {"ids": unique}).all()
            for dispatch in connection.execute(_DISPATCHES_OF, {"ids": unique}):
                dispatches[dispatch.event_id].append(dispatch)
        by_id = {row.id: to_record(row, dispatches[row.id]) for row in rows}
        return [by_id[event_id] for event_id in ids]

    def pending(self, limit: int = 1000) -> list[EventRecord]:
        """Events stored but not yet dispatched, oldest first."""
        with self.db.session() as session:
            rows = session.scalars(
                select(EventRow)
                .where(EventRow.outcome == Outcome.PENDING.value)
                .options(selectinload(EventRow.dispatches))
                .order_by(EventRow.id)
                .limit(limit)
            ).all()
            return [to_record(row) for row in rows]

    def list(
        self,
        *,
        limit: int = 100,
        offset: int = 0,
        outcome: str | None = None,
        source: str | None = None,
    ) -> tuple[list[EventRecord], int]:
        """Newest first; the page and the total count matching the filters."""
        filters = []
        if outcome:
            filters.append(EventRow.outcome == outcome)
        if source:
            filters.append(EventRow.source == source)
        with self.db.session() as session:
            total = session.scalar(select(func.count()).select_from(EventRow).where(*filters)) or 0
            rows = session.scalars(
                select(EventRow)
                .where(*filters)
                .options(selectinload(EventRow.dispatches))
                .order_by(EventRow.id.desc())
                .limit(limit)
                .offset(offset)
            ).all()
            return [to_record(row) for row in rows], total

    def counts(self) -> dict[tuple[str, str], int]:
        """Number of events by (source, outcome), for metrics."""
        with self.db.session() as session:
            rows = session.execute(
                select(EventRow.source, EventRow.outcome, func.count()).group_by(
                    EventRow.source, EventRow.outcome
                )
            )
            return {(source, outcome): count for source, outcome, count in rows}

    def trigger_counts(self) -> dict[str, dict[str, int]]:
        """Per trigger: events it turned into jobs (`matched`) and events it failed on."""
        counts: dict[str, dict[str, int]] = {}
        with self.db.session() as session:
            rows = session.execute(
                select(DispatchRow.trigger, DispatchRow.error.is_(None), func.count()).group_by(
                    DispatchRow.trigger, DispatchRow.error.is_(None)
                )
            )
            for trigger, ok, count in rows:
                entry = counts.setdefault(trigger, {"matched": 0, "failed": 0})
                entry["matched" if ok else "failed"] += count
        return counts


def _event_values(event: S3Event, source: str, now: datetime) -> dict[str, Any]:
    return {
        "idempotency_key": event.idempotency_key,
        "source": source,
        "bucket": event.bucket,
        "key": event.key,
        "event_name": event.event_name,
        "event_time": event.event_time,
        "etag": event.etag,
        "version_id": event.version_id,
        "sequencer": event.sequencer,
        "size": event.size,
        "flavour": event.flavour,
        "received_at": now,
        "deliveries": 1,
        "raw": stored_record(event.raw),  # bounded: known fields kept, large values cut
    }


def _record_duplicate(connection: Connection, event: S3Event, values: dict[str, Any]) -> int:
    """Count one more delivery on the original and store this one as its duplicate."""
    # Counted in the row itself, so that concurrent duplicates (other replicas) count their
    # deliveries one by one.
    original_id, deliveries = connection.execute(
        update(EventRow)
        .where(EventRow.dedup_key == event.idempotency_key)
        .values(deliveries=EventRow.deliveries + 1)
        .returning(EventRow.id, EventRow.deliveries)
    ).one()
    return connection.execute(
        insert(EventRow)
        .values(
            **values,
            outcome=Outcome.DUPLICATE.value,
            reason=f"duplicate of event {original_id} (delivery {deliveries})",
            duplicate_of=original_id,
        )
        .returning(EventRow.id)
    ).scalar_one()


# The hot statements, built once (every event passes through them).
_SETTLE = (
    update(EventRow)
    .where(EventRow.id == bindparam("event_id"), EventRow.outcome == Outcome.PENDING.value)
    .values(
        outcome=bindparam("new_outcome"),
        reason=bindparam("new_reason"),
        trigger=bindparam("first_trigger"),
        job_id=bindparam("first_job_id"),
    )
)
_INSERT_DISPATCH = insert(DispatchRow)
_EVENTS_BY_ID = select(EventRow.__table__).where(EventRow.id.in_(bindparam("ids", expanding=True)))
_DISPATCHES_OF = (
    select(DispatchRow.__table__)
    .where(DispatchRow.event_id.in_(bindparam("ids", expanding=True)))
    .order_by(DispatchRow.id)
)
