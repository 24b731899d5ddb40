"""The job table as a queue of leased work: claim, renew, hand back, recover.

An executor claims runnable jobs (each exactly once, by a compare-and-swap out of `new`),
renews its leases while it runs them, hands them back at shutdown, and `recover_expired`
requeues the jobs of an executor that died (its leases ran out). `JobService` is this queue
plus creation, reads and the attempt's own transitions.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, or_, select, update
from sqlalchemy.orm import Session, selectinload

from autoinfer.db import Database, utcnow
from autoinfer.errors import NotFound
from autoinfer.jobs.infra import (
    MAX_INFRA_RETRIES,
    infra_give_up_reason,
    infra_retries,
    infra_retry_reason,
)
from autoinfer.jobs.moves import (
    INSERT_TRANSITION,
    TerminalHook,
    move_row,
    requeue,
    to_record,
    transitions_of,
)
from autoinfer.jobs.records import JobRecord
from autoinfer.jobs.spec import TERMINAL, Status
from autoinfer.jobs.store import JobRow

LIVE_CLAIMED = (Status.WAITING_RESOURCES, Status.WAITING_DOWNLOAD, Status.RUNNING, Status.UPLOADING)


class JobQueue:
    """Claims and leases on the job table (the executors' side of it)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._terminal_hooks: list[TerminalHook] = []

    def add_terminal_hook(self, hook: TerminalHook) -> None:
        """Run `hook` in the transaction of every job's end (see `TerminalHook`)."""
        self._terminal_hooks.append(hook)

    def _ended(self, connection: Connection, row: Any) -> None:
        for hook in self._terminal_hooks:
            hook(connection, row)

    def claim(self, owner: str, lease_s: float, *, limit: int = 1) -> list[JobRecord]:
        """Claim up to `limit` runnable jobs for `owner`, oldest first, exactly once each."""
        now = utcnow()
        claimable = _CLAIMABLE if self.db.is_sqlite else _CLAIMABLE_LOCKED
        with self.db.connection() as connection:
            candidates = connection.scalars(claimable, {"now": now, "limit": limit}).all()
            if not candidates:
                return []
            # Compare-and-swap: only one claimer can move a job out of `new`.
            rows = connection.execute(
                _TAKE,
                {
                    "ids": list(candidates),
                    "owner": owner,
                    "expires": now + timedelta(seconds=lease_s),
                    "now": now,
                },
            ).all()
            if not rows:  # all claimed by someone else meanwhile
                return []
            connection.execute(
                INSERT_TRANSITION,
                [
                    {
                        "job_id": row.id,
                        "status": Status.WAITING_RESOURCES.value,
                        "attempt": row.attempt,
                        "now": now,
                        "reason": None,
                    }
                    for row in rows
                ],
            )
            history = transitions_of(connection, [row.id for row in rows])
        rows = sorted(rows, key=lambda row: (row.created_at, row.id))
        return [to_record(row, history[row.id]) for row in rows]

    def renew(self, job_ids: Iterable[str], owner: str, lease_s: float) -> set[str]:
        """Extend `owner`'s leases; returns the ids whose stop was requested."""
        ids = list(job_ids)
        if not ids:
            return set()
        now = utcnow()
        with self.db.session() as session:
            session.execute(
                update(JobRow)
                .where(JobRow.id.in_(ids), JobRow.lease_owner == owner)
                .values(lease_expires_at=now + timedelta(seconds=lease_s))
            )
            rows = session.scalars(
                select(JobRow.id).where(JobRow.id.in_(ids), JobRow.stop_requested.is_(True))
            ).all()
            return set(rows)

    def stop_requested(self, job_id: str) -> bool:
        with self.db.session() as session:
            return bool(session.scalar(select(JobRow.stop_requested).where(JobRow.id == job_id)))

    def release(self, job_id: str, owner: str) -> None:
        """Hand a claimed job back to the queue (shutdown) without spending an attempt."""
        with self.db.session() as session:
            row = self._row(session, job_id, lock=True)
            if row.lease_owner != owner or Status(row.status) in TERMINAL:
                return
            requeue(session, row, "handed back at shutdown", 0.0)
            row.attempt = max(0, row.attempt - 1)

    def recover_expired(self, *, backoff_s: float = 0.0, owner: str | None = None) -> list[str]:
        """Jobs whose lease expired (their executor died) go back in the queue or fail.

        A lost executor is an infrastructure failure, not the job's: the job is queued again
        without spending an attempt (as a hand-back at shutdown), at most `MAX_INFRA_RETRIES`
        times (`autoinfer.jobs.infra`), so a job that kills its service every time still ends.
        With `owner`, also reclaim every job still leased to that owner name (a restart of
        the same service finds its own unfinished work at once, without waiting).
        """
        now = utcnow()
        recovered = []
        with self.db.session() as session:
            condition = JobRow.lease_expires_at < now
            if owner is not None:
                condition = or_(condition, JobRow.lease_owner == owner)
            query = select(JobRow).where(
                JobRow.status.in_([s.value for s in LIVE_CLAIMED]), condition
            )
            if not self.db.is_sqlite:
                # Replicas recover concurrently: each expired job is requeued by one of them,
                # and a job claimed again meanwhile is seen as it is now (not expired).
                query = query.with_for_update(skip_locked=True)
            rows = session.scalars(query).all()
            for row in rows:
                lost = f"attempt {row.attempt} lost its executor ({row.lease_owner})"
                retries = infra_retries(row.transitions)
                if row.stop_requested:
                    move_row(session, row, Status.STOPPED, "stopped on request", ended=self._ended)
                elif retries < MAX_INFRA_RETRIES:
                    requeue(session, row, infra_retry_reason(lost, retries + 1), backoff_s)
                    row.attempt = max(0, row.attempt - 1)  # not counted against max_attempts
                else:
                    reason = infra_give_up_reason(lost, retries)
                    move_row(session, row, Status.FAILED, reason, ended=self._ended)
                recovered.append(row.id)
        return recovered

    def _row(self, session: Session, job_id: str, *, lock: bool = False) -> JobRow:
        query = select(JobRow).where(JobRow.id == job_id).options(selectinload(JobRow.transitions))
        if lock and not self.db.is_sqlite:
            query = query.with_for_update()
        row = session.scalars(query).first()
        if row is None:
            raise NotFound(f"job {job_id}: no such job")
        return row


# The claim's statements, built once (the claim loop runs them for every job).
_CLAIMABLE = (
    select(JobRow.id)
    .where(JobRow.status == Status.NEW.value)
    .where(or_(JobRow.not_before.is_(None), JobRow.not_before <= bindparam("now")))
    .order_by(JobRow.created_at, JobRow.id)
    .limit(bindparam("limit"))
)
# Replicas on PostgreSQL skip the rows another claimer holds instead of waiting for them.
_CLAIMABLE_LOCKED = _CLAIMABLE.with_for_update(skip_locked=True)
_TAKE = (
    update(JobRow)
    .where(JobRow.id.in_(bindparam("ids", expanding=True)), JobRow.status == Status.NEW.value)
    .values(
        status=Status.WAITING_RESOURCES.value,
        attempt=JobRow.attempt + 1,
        lease_owner=bindparam("owner"),
        lease_expires_at=bindparam("expires"),
        stop_requested=False,
        updated_at=bindparam("now"),
    )
    .returning(*JobRow.__table__.columns)
)
