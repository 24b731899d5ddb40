"""The notification outbox table: one row per (job end, target), written in the transaction
that commits the job's terminal status, delivered and marked by the delivery loop."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from autoinfer.orm import Base, UTCDateTime, utcnow


class NotificationRow(Base):
    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # Standard Webhooks' `webhook-id`: fixed at insert, the same on every attempt.
    webhook_id: Mapped[str] = mapped_column(String(64), unique=True)
    target: Mapped[str] = mapped_column(String(100), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # the target's type: webhook | sqs
    event_type: Mapped[str] = mapped_column(String(40))  # job.finished | job.failed | job.stopped
    job_id: Mapped[str] = mapped_column(String(64), index=True)  # no FK: outlives its job
    body: Mapped[str] = mapped_column(Text)  # the exact JSON sent, fixed at insert
    status: Mapped[str] = mapped_column(String(16))  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    # When the next attempt is due; while an attempt is under way, when its claim lapses.
    next_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    give_up_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)

    __table_args__ = (Index("ix_notifications_due", "status", "next_at"),)
