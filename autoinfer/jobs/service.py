"""The job service: creation, the state machine's committed transitions, logs and leases.

Every status change is one transaction that checks the current status, so concurrent writers
(executor threads, API requests, other replicas) can never make an illegal move.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.orm import Session, joinedload, selectinload

from autoinfer.db import Database, utcnow
from autoinfer.errors import Conflict, IllegalTransition, NotFound
from autoinfer.jobs.records import JobRecord, LogLine, Progress, TransitionRecord
from autoinfer.jobs.spec import TERMINAL, JobSpec, Status, can_transition
from autoinfer.jobs.store import JobRow, LogRow, TransitionRow

LIVE_CLAIMED = (Status.WAITING_RESOURCES, Status.WAITING_DOWNLOAD, Status.RUNNING, Status.UPLOADING)


def new_job_id() -> str:
    return uuid.uuid4().hex


def deterministic_job_id(*parts: str) -> str:
    """A job id derived from what caused the job, so that re-creating it is a no-op."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


class JobService:
    """All reads and writes of jobs go through here."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # --- creation and reads -------------------------------------------------------------

    def create(
        self,
        spec: JobSpec,
        *,
        job_id: str | None = None,
        source: str = "api",
        event_id: str | None = None,
        max_attempts: int = 1,
    ) -> tuple[JobRecord, bool]:
        """Create a job in status `new`; with a known `job_id` return the existing one instead.

        Returns the job and whether it was created by this call.
        """
        job_id = job_id or new_job_id()
        now = utcnow()
        with self.db.session() as session:
            existing = session.get(JobRow, job_id)
            if existing is not None:
                return _record(existing), False
            row = JobRow(
                id=job_id,
                name=spec.name,
                spec=spec.model_dump(mode="json"),
                status=Status.NEW.value,
                attempt=0,
                max_attempts=max_attempts,
                source=source,
                event_id=event_id,
                created_at=now,
                updated_at=now,
                not_before=now,
            )
            row.transitions.append(TransitionRow(status=Status.NEW.value, attempt=0, at=now))
            session.add(row)
            try:
                session.flush()
            except Exception:
                # Created concurrently by another writer with the same deterministic id.
                session.rollback()
                existing = session.get(JobRow, job_id)
                if existing is None:
                    raise
                return _record(existing), False
            return _record(row), True

    def get(self, job_id: str) -> JobRecord:
        with self.db.session() as session:
            return _record(self._row(session, job_id))

    def list(
        self,
        *,
        status: str | None = None,
        name: str | None = None,
        source: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[list[JobRecord], int]:
        """Newest first; returns the page and the total count matching the filters."""
        filters = []
        if status:
            filters.append(JobRow.status == status)
        if name:
            filters.append(JobRow.name == name)
        if source:
            filters.append(JobRow.source == source)
        with self.db.session() as session:
            total = session.scalar(select(func.count()).select_from(JobRow).where(*filters)) or 0
            rows = session.scalars(
                select(JobRow)
                .where(*filters)
                .options(selectinload(JobRow.transitions))
                .order_by(JobRow.created_at.desc(), JobRow.id)
                .limit(limit)
                .offset(offset)
            ).all()
            return [_record(row) for row in rows], total

    def counts_by_status(self) -> dict[str, int]:
        with self.db.session() as session:
            rows = session.execute(select(JobRow.status, func.count()).group_by(JobRow.status))
            return {status: count for status, count in rows}

    # --- the state machine --------------------------------------------------------------

    def transition(
        self, job_id: str, status: Status, *, reason: str | None = None, owner: str | None = None
    ) -> None:
        """Move a job to `status`, committed with its timestamp; refuse illegal moves.

        With `owner`, the move only happens while that executor still holds the job's lease.
        Every job passes here five times, so it is a compare-and-swap on the status (and lease)
        plus the transition row, reading back nothing; a concurrent move is a Conflict.
        """
        with self.db.session() as session:
            current = session.execute(
                select(JobRow.status, JobRow.lease_owner, JobRow.attempt).where(JobRow.id == job_id)
            ).one_or_none()
            if current is None:
                raise NotFound(f"job {job_id}: no such job")
            if owner is not None and current.lease_owner != owner:
                raise Conflict(f"job {job_id}: lease is no longer held by {owner}")
            old = Status(current.status)
            if not can_transition(old, status):
                raise IllegalTransition(f"job {job_id}: cannot go from '{old}' to '{status}'")
            now = utcnow()
            values: dict[str, Any] = {"status": status.value, "updated_at": now}
            if status in TERMINAL:
                values.update(
                    reason=reason if status != Status.FINISHED else None,
                    lease_owner=None,
                    lease_expires_at=None,
                )
            guard = [JobRow.id == job_id, JobRow.status == old.value]
            if owner is not None:
                guard.append(JobRow.lease_owner == owner)
            moved = session.execute(
                update(JobRow)
                .where(*guard)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            if moved.rowcount != 1:  # type: ignore[attr-defined]
                raise Conflict(f"job {job_id}: changed by another writer before '{status}'")
            session.execute(
                insert(TransitionRow).values(
                    job_id=job_id,
                    status=status.value,
                    attempt=current.attempt,
                    at=now,
                    reason=reason,
                )
            )

    def _move(self, session: Session, row: JobRow, status: Status, reason: str | None) -> None:
        old = Status(row.status)
        if not can_transition(old, status):
            raise IllegalTransition(f"job {row.id}: cannot go from '{old}' to '{status}'")
        now = utcnow()
        row.status = status.value
        row.updated_at = now
        if status in TERMINAL:
            row.reason = reason if status != Status.FINISHED else None
            row.lease_owner = None
            row.lease_expires_at = None
        session.add(TransitionRow(job_id=row.id, status=status.value, attempt=row.attempt, at=now, reason=reason))

    def request_stop(self, job_id: str) -> JobRecord:
        """Stop a job: at once if nobody runs it yet, else flag it for its executor."""
        with self.db.session() as session:
            row = self._row(session, job_id, lock=True)
            status = Status(row.status)
            if status in TERMINAL:
                raise Conflict(f"job {job_id}: already {status}")
            if status == Status.NEW:
                self._move(session, row, Status.STOPPED, "stopped on request")
            else:
                row.stop_requested = True
                row.updated_at = utcnow()
            return _record(row)

    def retry(self, job_id: str, *, delay_s: float = 0.0) -> JobRecord:
        """Put a failed or stopped job back in the queue as a new attempt."""
        with self.db.session() as session:
            row = self._row(session, job_id, lock=True)
            if Status(row.status) not in (Status.FAILED, Status.STOPPED):
                raise Conflict(f"job {job_id}: only failed or stopped jobs can be retried (it is {row.status})")
            self._requeue(session, row, "retry requested", delay_s, reset_budget=True)
            return _record(row)

    def _requeue(
        self, session: Session, row: JobRow, reason: str, delay_s: float, *, reset_budget: bool = False
    ) -> None:
        self._move(session, row, Status.NEW, reason)
        row.reason = None
        row.stop_requested = False
        row.lease_owner = None
        row.lease_expires_at = None
        row.progress_done = None
        row.progress_total = None
        row.not_before = utcnow() + timedelta(seconds=delay_s)
        if reset_budget:
            row.max_attempts = max(row.max_attempts, row.attempt + 1)

    def release(self, job_id: str, owner: str) -> None:
        """Hand a claimed job back to the queue (shutdown) without spending an attempt."""
        with self.db.session() as session:
            row = self._row(session, job_id, lock=True)
            if row.lease_owner != owner or Status(row.status) in TERMINAL:
                return
            self._requeue(session, row, "handed back at shutdown", 0.0)
            row.attempt = max(0, row.attempt - 1)

    def fail_or_retry(self, job_id: str, reason: str, *, owner: str, backoff_s: float) -> JobRecord:
        """A failed attempt: retry later with backoff while attempts remain, else `failed`."""
        with self.db.session() as session:
            row = self._row(session, job_id, lock=True)
            if row.lease_owner != owner:
                raise Conflict(f"job {job_id}: lease is no longer held by {owner}")
            if row.attempt < row.max_attempts and not row.stop_requested:
                delay = backoff_s * (2 ** (row.attempt - 1))
                self._requeue(session, row, f"attempt {row.attempt} failed: {reason}", delay)
            else:
                self._move(session, row, Status.FAILED, reason)
            return _record(row)

    # --- leases -------------------------------------------------------------------------

    def claim(self, owner: str, lease_s: float, *, limit: int = 1) -> list[JobRecord]:
        """Claim up to `limit` runnable jobs for `owner`, oldest first, exactly once each."""
        now = utcnow()
        claimed: list[JobRecord] = []
        claimed_ids: list[str] = []
        with self.db.session() as session:
            query = (
                select(JobRow.id)
                .where(JobRow.status == Status.NEW.value)
                .where(or_(JobRow.not_before.is_(None), JobRow.not_before <= now))
                .order_by(JobRow.created_at, JobRow.id)
                .limit(limit)
            )
            if not self.db.is_sqlite:
                query = query.with_for_update(skip_locked=True)
            candidates = session.scalars(query).all()
            for job_id in candidates:
                # Compare-and-swap: only one claimer can move a job out of `new`.
                attempt = session.execute(
                    update(JobRow)
                    .where(and_(JobRow.id == job_id, JobRow.status == Status.NEW.value))
                    .values(
                        status=Status.WAITING_RESOURCES.value,
                        attempt=JobRow.attempt + 1,
                        lease_owner=owner,
                        lease_expires_at=now + timedelta(seconds=lease_s),
                        stop_requested=False,
                        updated_at=now,
                    )
                    .returning(JobRow.attempt)
                    .execution_options(synchronize_session=False)
                ).scalar()
                if attempt is None:  # claimed by someone else meanwhile
                    continue
                session.execute(
                    insert(TransitionRow).values(
                        job_id=job_id,
                        status=Status.WAITING_RESOURCES.value,
                        attempt=attempt,
                        at=now,
                    )
                )
                claimed_ids.append(job_id)
            if claimed_ids:
                rows = (
                    session.scalars(
                        select(JobRow)
                        .where(JobRow.id.in_(claimed_ids))
                        .options(joinedload(JobRow.transitions))
                        .order_by(JobRow.created_at, JobRow.id)
                    )
                    .unique()
                    .all()
                )
                claimed = [_record(row) for row in rows]
        return claimed

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

    def recover_expired(self, *, backoff_s: float = 0.0, owner: str | None = None) -> list[str]:
        """Jobs whose lease expired (their executor died) become a new attempt or fail.

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
                reason = f"attempt {row.attempt} lost its executor ({row.lease_owner})"
                if row.stop_requested:
                    self._move(session, row, Status.STOPPED, "stopped on request")
                elif row.attempt < row.max_attempts:
                    self._requeue(session, row, reason, backoff_s)
                else:
                    self._move(session, row, Status.FAILED, reason)
                recovered.append(row.id)
        return recovered

    # --- progress, results and logs -----------------------------------------------------

    def set_progress(self, job_id: str, done: int, total: int) -> None:
        with self.db.session() as session:
            session.execute(
                update(JobRow)
                .where(JobRow.id == job_id)
                .values(progress_done=done, progress_total=total, updated_at=utcnow())
            )

    def set_result(self, job_id: str, *, output_location: str | None, model_info: dict[str, Any] | None) -> None:
        with self.db.session() as session:
            session.execute(
                update(JobRow)
                .where(JobRow.id == job_id)
                .values(output_location=output_location, model_info=model_info)
            )

    def append_log(self, job_id: str, lines: Iterable[tuple[datetime, str, str]]) -> None:
        rows = [LogRow(job_id=job_id, at=at, stream=stream, line=line) for at, stream, line in lines]
        if not rows:
            return
        with self.db.session() as session:
            session.add_all(rows)

    def logs(self, job_id: str, *, after: int = 0, limit: int = 10_000) -> list[LogLine]:
        with self.db.session() as session:
            self._row(session, job_id)
            rows = session.scalars(
                select(LogRow)
                .where(LogRow.job_id == job_id, LogRow.id > after)
                .order_by(LogRow.id)
                .limit(limit)
            ).all()
            return [LogLine(id=r.id, at=r.at, stream=r.stream, line=r.line) for r in rows]

    # --- internals ----------------------------------------------------------------------

    def _row(self, session: Session, job_id: str, *, lock: bool = False) -> JobRow:
        query = select(JobRow).where(JobRow.id == job_id).options(selectinload(JobRow.transitions))
        if lock and not self.db.is_sqlite:
            query = query.with_for_update()
        row = session.scalars(query).first()
        if row is None:
            raise NotFound(f"job {job_id}: no such job")
        return row


def _record(row: JobRow) -> JobRecord:
    progress = None
    if row.progress_total is not None:
        progress = Progress(done=row.progress_done or 0, total=row.progress_total)
    return JobRecord(
        id=row.id,
        name=row.name,
        status=row.status,
        attempt=row.attempt,
        max_attempts=row.max_attempts,
        reason=row.reason,
        source=row.source,
        event_id=row.event_id,
        created_at=row.created_at,
        updated_at=row.updated_at,
        progress=progress,
        output_location=row.output_location,
        model_info=row.model_info,
        stop_requested=row.stop_requested,
        spec=row.spec,
        transitions=[
            TransitionRecord(status=t.status, attempt=t.attempt, at=t.at, reason=t.reason)
            for t in row.transitions
        ],
    )
