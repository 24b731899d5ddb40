"""The outbox: notifications written with the job's terminal status, claimed for delivery.

`enqueue` runs inside the transaction that commits a job's end (JobService's terminal hook),
so a job never ends without its notifications and a notification never exists for a job that
did not end. Delivery claims due rows by pushing their `next_at` past a lease (a
compare-and-swap, safe between replicas): a process killed mid-delivery leaves the row due
again once the lease lapses, so delivery is at-least-once, with one `webhook-id` throughout.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Connection, bindparam, func, insert, select, update

from autoinfer.db import Database, utcnow
from autoinfer.errors import NotFound
from autoinfer.inbox import EventRow
from autoinfer.jobs.items import counts_in
from autoinfer.notifications.body import EndedJob, event_type, job_end_body, new_webhook_id
from autoinfer.notifications.config import NotificationTarget
from autoinfer.notifications.store import NotificationRow

STATUSES = ("pending", "delivered", "failed")
Clock = Callable[[], datetime]


class NotificationRecord(BaseModel):
    """A notification as `GET /v1/notifications` shows it (`body` only when asked for one)."""

    id: int
    webhook_id: str
    target: str
    kind: str
    event_type: str
    job_id: str
    status: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime | None
    give_up_at: datetime
    last_attempt_at: datetime | None
    delivered_at: datetime | None
    last_error: str | None
    body: dict[str, Any] | None = None


@dataclass(frozen=True)
class Claimed:
    """A notification claimed for one delivery attempt."""

    id: int
    webhook_id: str
    target: str
    event_type: str
    body: str
    attempts: int  # this attempt's number
    give_up_at: datetime


class Outbox:
    """Writes notifications for ended jobs and hands due ones to the delivery loop."""

    def __init__(
        self,
        db: Database,
        targets: Sequence[NotificationTarget] = (),
        *,
        clock: Clock = utcnow,
        on_enqueued: Callable[[], None] | None = None,
    ) -> None:
        self.db = db
        self.targets = list(targets)
        self.clock = clock
        self.on_enqueued = on_enqueued

    # --- the terminal hook (inside the job's transaction) -------------------------------

    def enqueue(self, connection: Connection, job: EndedJob) -> None:
        """Add one notification per target that wants this job's end, on `connection`."""
        kind = event_type(job.status)
        targets = [target for target in self.targets if target.wants(kind, job.source or "")]
        if not targets:
            return
        now = self.clock()
        body = job_end_body(
            job, items=counts_in(connection, job.id), event=_event(connection, job), now=now
        )
        connection.execute(
            insert(NotificationRow),
            [
                {
                    "webhook_id": new_webhook_id(),
                    "target": target.name,
                    "kind": target.type,
                    "event_type": kind,
                    "job_id": job.id,
                    "body": body,
                    "status": "pending",
                    "attempts": 0,
                    "created_at": now,
                    "next_at": now,
                    "give_up_at": now + timedelta(seconds=target.retry_for_s),
                }
                for target in targets
            ],
        )
        if self.on_enqueued is not None:
            self.on_enqueued()

    # --- delivery -----------------------------------------------------------------------

    def claim_due(self, *, lease_s: float, limit: int = 20) -> list[Claimed]:
        """Claim up to `limit` due notifications for one attempt each (until `lease_s`)."""
        now = self.clock()
        with self.db.connection() as connection:
            ids = connection.scalars(_DUE, {"now": now, "limit": limit}).all()
            if not ids:
                return []
            rows = connection.execute(
                _CLAIM,
                {"ids": list(ids), "now": now, "lease": now + timedelta(seconds=lease_s)},
            ).all()
        return [
            Claimed(r.id, r.webhook_id, r.target, r.event_type, r.body, r.attempts, r.give_up_at)
            for r in sorted(rows, key=lambda row: row.id)
        ]

    def next_due(self) -> datetime | None:
        """When the earliest pending notification is due (None: nothing pending)."""
        with self.db.connection() as connection:
            return connection.scalar(_NEXT_DUE)

    def delivered(self, claimed: Claimed) -> None:
        self._settle(claimed, status="delivered", delivered_at=self.clock(), last_error=None)

    def retry_at(self, claimed: Claimed, when: datetime, error: str) -> None:
        self._settle(claimed, status="pending", next_at=when, last_error=error)

    def failed(self, claimed: Claimed, error: str) -> None:
        self._settle(claimed, status="failed", last_error=error)

    def _settle(self, claimed: Claimed, **values: Any) -> None:
        """Record the attempt's outcome, unless another claimer took the row since."""
        with self.db.connection() as connection:
            connection.execute(
                update(NotificationRow)
                .where(
                    NotificationRow.id == claimed.id,
                    NotificationRow.status == "pending",
                    NotificationRow.attempts == claimed.attempts,
                )
                .values(**values)
            )

    # --- reads and redelivery -----------------------------------------------------------

    def list(
        self,
        *,
        status: str | None = None,
        job_id: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[NotificationRecord], int]:
        """Newest first; the page and the total matching the filters."""
        filters = []
        if status:
            filters.append(NotificationRow.status == status)
        if job_id:
            filters.append(NotificationRow.job_id == job_id)
        with self.db.session() as session:
            total = session.scalar(
                select(func.count()).select_from(NotificationRow).where(*filters)
            )
            rows = session.scalars(
                select(NotificationRow)
                .where(*filters)
                .order_by(NotificationRow.id.desc())
                .limit(limit)
                .offset(offset)
            ).all()
            return [_record(row) for row in rows], total or 0

    def get(self, notification_id: int) -> NotificationRecord:
        with self.db.session() as session:
            row = session.get(NotificationRow, notification_id)
            if row is None:
                raise NotFound(f"notification {notification_id}: no such notification")
            return _record(row, with_body=True)

    def redeliver(self, notification_id: int, *, retry_for_s: float) -> NotificationRecord:
        """Deliver again now (same `webhook-id`), retrying for `retry_for_s` if it fails."""
        now = self.clock()
        with self.db.session() as session:
            row = session.get(NotificationRow, notification_id)
            if row is None:
                raise NotFound(f"notification {notification_id}: no such notification")
            row.status = "pending"
            row.next_at = now
            row.give_up_at = now + timedelta(seconds=retry_for_s)
            record = _record(row, with_body=True)
        if self.on_enqueued is not None:
            self.on_enqueued()
        return record

    def counts(self) -> dict[str, int]:
        """Notifications by status (database-wide)."""
        with self.db.connection() as connection:
            rows = connection.execute(
                select(NotificationRow.status, func.count()).group_by(NotificationRow.status)
            ).all()
        return dict(rows)


def _event(connection: Connection, job: EndedJob) -> dict[str, Any] | None:
    """The storage event that made the job (a rule trigger's job), as the body shows it."""
    if not job.event_id or not str(job.event_id).isdigit():
        return None
    row = connection.execute(
        select(
            EventRow.id,
            EventRow.bucket,
            EventRow.key,
            EventRow.event_name,
            EventRow.version_id,
            EventRow.etag,
            EventRow.source,
        ).where(EventRow.id == int(job.event_id))
    ).first()
    if row is None:
        return {"id": int(job.event_id)}
    return {
        "id": row.id,
        "bucket": row.bucket,
        "key": row.key,
        "event_name": row.event_name,
        "version_id": row.version_id,
        "etag": row.etag,
        "source": row.source,
    }


def _record(row: NotificationRow, *, with_body: bool = False) -> NotificationRecord:
    pending = row.status == "pending"
    return NotificationRecord(
        id=row.id,
        webhook_id=row.webhook_id,
        target=row.target,
        kind=row.kind,
        event_type=row.event_type,
        job_id=row.job_id,
        status=row.status,
        attempts=row.attempts,
        created_at=row.created_at,
        next_attempt_at=row.next_at if pending else None,
        give_up_at=row.give_up_at,
        last_attempt_at=row.last_attempt_at,
        delivered_at=row.delivered_at,
        last_error=row.last_error,
        body=json.loads(row.body) if with_body else None,
    )


_DUE = (
    select(NotificationRow.id)
    .where(NotificationRow.status == "pending", NotificationRow.next_at <= bindparam("now"))
    .order_by(NotificationRow.next_at, NotificationRow.id)
    .limit(bindparam("limit"))
)
_CLAIM = (
    update(NotificationRow)
    .where(
        NotificationRow.id.in_(bindparam("ids", expanding=True)),
        NotificationRow.status == "pending",
        NotificationRow.next_at <= bindparam("now"),
    )
    .values(
        next_at=bindparam("lease"),
        attempts=NotificationRow.attempts + 1,
        last_attempt_at=bindparam("now"),
    )
    .returning(
        NotificationRow.id,
        NotificationRow.webhook_id,
        NotificationRow.target,
        NotificationRow.event_type,
        NotificationRow.body,
        NotificationRow.attempts,
        NotificationRow.give_up_at,
    )
)
_NEXT_DUE = select(func.min(NotificationRow.next_at)).where(NotificationRow.status == "pending")
