"""The inbox's tables: events, their dispatches (one per matching trigger), the sources'
cursors and the objects each source has already reported."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from autoinfer.events.model import (
    MAX_BUCKET_CHARS,
    MAX_ETAG_CHARS,
    MAX_EVENT_NAME_CHARS,
    MAX_SEQUENCER_CHARS,
    MAX_VERSION_ID_CHARS,
)
from autoinfer.orm import Base, UTCDateTime, utcnow


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
