"""The inbox: a durable, deduplicated log of every storage event the service received.

An event is committed here before any source acknowledges it. Its idempotency key (bucket,
key, version id or ETag) is unique among first deliveries, so a repeated delivery, from the
same source or another one, is stored as a `duplicate` row pointing at the original and
starts nothing. The tables of the sources' cursors (which objects a watcher or poller has
already reported) live here too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from sqlalchemy import (
    JSON,
    BigInteger,
    Connection,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    bindparam,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship, selectinload

from autoinfer.errors import NotFound
from autoinfer.events.model import (
    MAX_BUCKET_CHARS,
    MAX_ETAG_CHARS,
    MAX_EVENT_NAME_CHARS,
    MAX_SEQUENCER_CHARS,
    MAX_VERSION_ID_CHARS,
    S3Event,
)
from autoinfer.events.stored_record import stored_record
from autoinfer.orm import Base, UTCDateTime, utcnow

if TYPE_CHECKING:
    from autoinfer.db import Database

#: How much of a rejected body is kept for the operator to look at.
EXCERPT_CHARS = 2000


class Outcome(StrEnum):
    """What became of an event."""

    PENDING = "pending"  # stored, not yet matched against the triggers
    MATCHED = "matched"  # every matching trigger created its job / ran its handler
    DUPLICATE = "duplicate"  # a repeated delivery of an event already stored
    IGNORED = "ignored"  # no trigger matches it
    REJECTED = "rejected"  # the body could not be parsed
    FAILED = "failed"  # a matching trigger could not render its job or its handler raised


# --- tables ---------------------------------------------------------------------------


class EventRow(Base):
    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    idempotency_key: Mapped[str | None] = mapped_column(Text, nullable=True, index=True)
    # The idempotency key again, but only on an event's first delivery (NULL on duplicates
    # and rejected bodies): the unique index that makes recording a delivery idempotent.
    dedup_key: Mapped[str | None] = mapped_column(Text, nullable=True, unique=True)
    source: Mapped[str] = mapped_column(String(300))
    # The lengths are those `parse_record` checks against (a longer field is a rejected record).
    bucket: Mapped[str | None] = mapped_column(String(MAX_BUCKET_CHARS), nullable=True)
    key: Mapped[str | None] = mapped_column(Text, nullable=True)
    event_name: Mapped[str | None] = mapped_column(String(MAX_EVENT_NAME_CHARS), nullable=True)
    event_time: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    etag: Mapped[str | None] = mapped_column(String(MAX_ETAG_CHARS), nullable=True)
    version_id: Mapped[str | None] = mapped_column(String(MAX_VERSION_ID_CHARS), nullable=True)
    sequencer: Mapped[str | None] = mapped_column(String(MAX_SEQUENCER_CHARS), nullable=True)
    size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    flavour: Mapped[str | None] = mapped_column(String(16), nullable=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    outcome: Mapped[str] = mapped_column(String(16), index=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The first trigger that matched and the job it created (all of them: `dispatches`).
    trigger: Mapped[str | None] = mapped_column(String(200), nullable=True)
    job_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    duplicate_of: Mapped[int | None] = mapped_column(Integer, nullable=True)
    deliveries: Mapped[int] = mapped_column(Integer, default=1)
    raw: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    body_excerpt: Mapped[str | None] = mapped_column(Text, nullable=True)

    dispatches: Mapped[list[DispatchRow]] = relationship(
        order_by="DispatchRow.id", cascade="all, delete-orphan"
    )

    __table_args__ = (Index("ix_events_source_outcome", "source", "outcome"),)


class DispatchRow(Base):
    """One trigger's handling of one event: the job it created, or why it could not."""

    __tablename__ = "event_dispatches"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), index=True)
    trigger: Mapped[str] = mapped_column(String(200), index=True)
    job_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SourceCursorRow(Base):
    """A watcher's or poller's bookmark: when it first looked (backfill decisions hang on it)."""

    __tablename__ = "source_cursors"

    source: Mapped[str] = mapped_column(String(300), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    scanned_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class SeenObjectRow(Base):
    """An object a source has already reported, with the stamps that tell a change."""

    __tablename__ = "source_seen_objects"

    source: Mapped[str] = mapped_column(String(300), primary_key=True)
    bucket: Mapped[str] = mapped_column(String(255), primary_key=True)
    key: Mapped[str] = mapped_column(Text, primary_key=True)
    etag: Mapped[str | None] = mapped_column(String(200), nullable=True)
    size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # Backend-specific change stamp: the file's mtime in ns for the watcher, the version id
    # or last-modified time for the poller.
    stamp: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# --- read models ----------------------------------------------------------------------


class DispatchRecord(BaseModel):
    trigger: str
    job_id: str | None
    error: str | None
    at: datetime


class EventRecord(BaseModel):
    """An event as users see it (API, SDK, CLI): what arrived and what became of it."""

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
    raw: dict[str, Any] | None
    body_excerpt: str | None


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


@dataclass(frozen=True)
class SeenObject:
    etag: str | None
    size: int | None
    stamp: str | None


# --- the inbox ------------------------------------------------------------------------


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
            return _record(row)

    def get_many(self, ids: Sequence[int]) -> list[EventRecord]:
        """The records of `ids`, in that order."""
        unique = sorted(set(ids))
        dispatches: dict[int, list[Any]] = {event_id: [] for event_id in unique}
        with self.db.connection() as connection:
            rows = connection.execute(_EVENTS_BY_ID, {"ids": unique}).all()
            for dispatch in connection.execute(_DISPATCHES_OF, {"ids": unique}):
                dispatches[dispatch.event_id].append(dispatch)
        by_id = {row.id: _record(row, dispatches[row.id]) for row in rows}
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
            return [_record(row) for row in rows]

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
            return [_record(row) for row in rows], total

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


class SourceCursor:
    """What one source (by name) has already reported, so rescans and restarts report only
    what changed. Scoped by the source's name, which includes its bucket and prefix."""

    def __init__(self, db: Database, source: str) -> None:
        self.db = db
        self.source = source
        # One statement for any number of objects (run as an executemany), built once.
        upsert = db.insert()(SeenObjectRow)
        self._upsert = upsert.on_conflict_do_update(
            index_elements=["source", "bucket", "key"],
            set_={name: upsert.excluded[name] for name in ("etag", "size", "stamp", "seen_at")},
        )

    def started(self) -> bool:
        """Whether this source has completed a first scan before (in this or an earlier run)."""
        with self.db.session() as session:
            return session.get(SourceCursorRow, self.source) is not None

    def mark_scanned(self) -> None:
        now = utcnow()
        with self.db.session() as session:
            row = session.get(SourceCursorRow, self.source)
            if row is None:
                session.add(SourceCursorRow(source=self.source, started_at=now, scanned_at=now))
            else:
                row.scanned_at = now

    def seen(self, bucket: str | None = None) -> dict[tuple[str, str], SeenObject]:
        """(bucket, key) → what was reported of it."""
        query = select(SeenObjectRow).where(SeenObjectRow.source == self.source)
        if bucket is not None:
            query = query.where(SeenObjectRow.bucket == bucket)
        with self.db.session() as session:
            return {
                (row.bucket, row.key): SeenObject(etag=row.etag, size=row.size, stamp=row.stamp)
                for row in session.scalars(query)
            }

    def remember(self, objects: Iterable[tuple[str, str, SeenObject]]) -> None:
        """Record (bucket, key, state) as reported, replacing what was known of those keys."""
        rows = [
            {
                "source": self.source,
                "bucket": bucket,
                "key": key,
                "etag": state.etag,
                "size": state.size,
                "stamp": state.stamp,
                "seen_at": utcnow(),
            }
            for bucket, key, state in objects
        ]
        if not rows:
            return
        with self.db.connection() as connection:
            connection.execute(self._upsert, rows)

    def forget(self, keys: Iterable[tuple[str, str]]) -> None:
        """Drop (bucket, key) entries of objects that no longer exist."""
        keys = list(keys)
        with self.db.session() as session:
            for bucket, key in keys:
                session.execute(
                    delete(SeenObjectRow).where(
                        SeenObjectRow.source == self.source,
                        SeenObjectRow.bucket == bucket,
                        SeenObjectRow.key == key,
                    )
                )


# --- internals ------------------------------------------------------------------------


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
    return connection.scalar(
        insert(EventRow)
        .values(
            **values,
            outcome=Outcome.DUPLICATE.value,
            reason=f"duplicate of event {original_id} (delivery {deliveries})",
            duplicate_of=original_id,
        )
        .returning(EventRow.id)
    )


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


def _record(row: Any, dispatches: Sequence[Any] | None = None) -> EventRecord:
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
