"""The job service: creation, reads, an attempt's committed transitions, its progress and logs.

Every status change goes through `jobs.moves.move`: one transaction whose UPDATE checks the
current status (and lease), so concurrent writers (executor threads, API requests, other
replicas) can never make an illegal move. Claims and leases are `jobs.queue.JobQueue`, which
this service extends.
"""

from __future__ import annotations

import builtins
import hashlib
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, insert, select, update
from sqlalchemy.orm import selectinload

from autoinfer.db import utcnow
from autoinfer.errors import Conflict
from autoinfer.jobs.items import ItemBatch, item_counts, write_items
from autoinfer.jobs.moves import TerminalHook, log_rows, move, move_row, requeue, to_record
from autoinfer.jobs.queue import LIVE_CLAIMED, JobQueue
from autoinfer.jobs.records import JobRecord, LogLine
from autoinfer.jobs.spec import TERMINAL, JobSpec, Status
from autoinfer.jobs.store import JobRow, LogRow, TransitionRow
from autoinfer.retrying import jittered_delay

__all__ = [
    "LIVE_CLAIMED",
    "JobResult",
    "JobService",
    "NewJob",
    "TerminalHook",
    "deterministic_job_id",
    "new_job_id",
]

#: The longest wait before a failed attempt's retry (each further attempt doubles the job's
#: backoff up to here, drawn from the upper half so retries do not come in lockstep).
RETRY_MAX_DELAY_S = 300.0


@dataclass(frozen=True)
class NewJob:
    """A job to create with `JobService.create_many`."""

    spec: JobSpec
    job_id: str
    source: str = "api"
    event_id: str | None = None
    max_attempts: int = 1


@dataclass(frozen=True)
class JobResult:
    """Where a finished attempt put its output and what model produced it."""

    output_location: str | None
    model_info: dict[str, Any] | None


def new_job_id() -> str:
    return uuid.uuid4().hex


def deterministic_job_id(*parts: str) -> str:
    """A job id derived from what caused the job, so that re-creating it is a no-op."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


class JobService(JobQueue):
    """All reads and writes of jobs go through here (claims and leases: `JobQueue`)."""

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
        new = NewJob(spec, job_id or new_job_id(), source, event_id, max_attempts)
        (created,) = self.create_many([new])
        return self.get(new.job_id), created

    def create_many(self, new_jobs: Sequence[NewJob]) -> list[bool]:
        """Create jobs in status `new` in one transaction; for each, whether this call created
        it (False: a job with its id exists already, e.g. created by another replica)."""
        if not new_jobs:
            return []
        now = utcnow()
        insert = self.db.insert()
        with self.db.connection() as connection:
            inserted = set(
                connection.scalars(
                    insert(JobRow)
                    .on_conflict_do_nothing(index_elements=["id"])
                    .returning(JobRow.id),
                    [_new_row(new, now) for new in _unique(new_jobs)],
                )
            )
            if inserted:
                connection.execute(
                    insert(TransitionRow),
                    [
                        {"job_id": job_id, "status": Status.NEW.value, "attempt": 0, "at": now}
                        for job_id in sorted(inserted)
                    ],
                )
        seen: set[str] = set()
        created = []
        for new in new_jobs:
            created.append(new.job_id in inserted and new.job_id not in seen)
            seen.add(new.job_id)
        return created

    def get(self, job_id: str) -> JobRecord:
        with self.db.session() as session:
            record = to_record(self._row(session, job_id))
            return _with_items([record], session.connection())[0]

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
            return _with_items([to_record(row) for row in rows], session.connection()), total

    def counts_by_status(self) -> dict[str, int]:
        with self.db.session() as session:
            rows = session.execute(select(JobRow.status, func.count()).group_by(JobRow.status))
            return dict(rows.tuples().all())

    # --- the state machine --------------------------------------------------------------

    def transition(
        self,
        job_id: str,
        status: Status,
        *,
        reason: str | None = None,
        owner: str | None = None,
        progress: tuple[int, int] | None = None,
        result: JobResult | None = None,
        log_lines: Sequence[tuple[datetime, str, str]] = (),
        passed: Sequence[tuple[Status, datetime]] = (),
        items: ItemBatch | None = None,
    ) -> None:
        """Move a job to `status`, committed with its timestamp; refuse illegal moves.
        `passed`: statuses it went through before, at those times, moved first in the same
        transaction (a runner's brief steps: one commit instead of one each); `items`: item
        results stored before the moves, in it too (a job's end then counts them).

        With `owner`, the move only happens while that executor still holds the job's lease.
        What goes with the move — images done/total, the result, buffered log lines — commits
        in the same transaction. Every job passes here five times, so it is one compare-and-swap
        on the status (and lease) plus the inserts (`jobs.moves.move`); a refused move raises
        NotFound, IllegalTransition, or Conflict for a concurrent change or a lost lease.
        """
        outcome = None if result is None else (result.output_location, result.model_info)
        with self.db.connection() as connection:
            if items is not None:
                write_items(connection, job_id, items[1], replace=items[0])
            for earlier, at in passed:
                move(connection, job_id, earlier, owner=owner, ended=self._ended, now=at)
            move(
                connection,
                job_id,
                status,
                reason=reason,
                owner=owner,
                progress=progress,
                result=outcome,
                ended=self._ended,
            )
            if log_lines:
                connection.execute(insert(LogRow), log_rows(job_id, log_lines))

    def request_stop(self, job_id: str) -> JobRecord:
        """Stop a job: at once if nobody runs it yet, else flag it for its executor."""
        with self.db.session() as session:
            row = self._row(session, job_id, lock=True)
            status = Status(row.status)
            if status in TERMINAL:
                raise Conflict(f"job {job_id}: already {status}")
            if status == Status.NEW:
                move_row(session, row, Status.STOPPED, "stopped on request", ended=self._ended)
            else:
                row.stop_requested = True
                row.updated_at = utcnow()
            return to_record(row)

    def retry(self, job_id: str, *, delay_s: float = 0.0) -> JobRecord:
        """Put a failed or stopped job back in the queue as a new attempt."""
        with self.db.session() as session:
            row = self._row(session, job_id, lock=True)
            if Status(row.status) not in (Status.FAILED, Status.STOPPED):
                raise Conflict(
                    f"job {job_id}: only failed or stopped jobs can be retried (it is {row.status})"
                )
            requeue(session, row, "retry requested", delay_s, reset_budget=True)
            return to_record(row)

    def fail_or_retry(
        self, job_id: str, reason: str, *, owner: str, backoff_s: float, retry: bool = True
    ) -> JobRecord:
        """A failed attempt: retry later with backoff while attempts remain, else `failed`.
        `retry=False`: a failure no new attempt can change (the input itself is at fault).
        The backoff is the project's one retry policy (`retrying.jittered_delay`): `backoff_s`
        doubling with each attempt, capped at RETRY_MAX_DELAY_S, jittered."""
        with self.db.session() as session:
            row = self._row(session, job_id, lock=True)
            if row.lease_owner != owner:
                raise Conflict(f"job {job_id}: lease is no longer held by {owner}")
            if retry and row.attempt < row.max_attempts and not row.stop_requested:
                delay = jittered_delay(row.attempt, base_s=backoff_s, max_s=RETRY_MAX_DELAY_S)
                requeue(session, row, f"attempt {row.attempt} failed: {reason}", delay)
            else:
                move_row(session, row, Status.FAILED, reason, ended=self._ended)
            return to_record(row)

    # --- progress, results and logs -----------------------------------------------------

    def set_progress(self, job_id: str, done: int, total: int) -> None:
        with self.db.connection() as connection:
            connection.execute(
                update(JobRow)
                .where(JobRow.id == job_id)
                .values(progress_done=done, progress_total=total, updated_at=utcnow())
            )

    def set_result(
        self, job_id: str, *, output_location: str | None, model_info: dict[str, Any] | None
    ) -> None:
        with self.db.connection() as connection:
            connection.execute(
                update(JobRow)
                .where(JobRow.id == job_id)
                .values(output_location=output_location, model_info=model_info)
            )

    def append_log(self, job_id: str, lines: Iterable[tuple[datetime, str, str]]) -> None:
        rows = log_rows(job_id, lines)
        if not rows:
            return
        with self.db.connection() as connection:
            connection.execute(insert(LogRow), rows)

    def logs(
        self, job_id: str, *, after: int = 0, limit: int = 10_000
    ) -> builtins.list[LogLine]:  # `list` here is the method above
        with self.db.session() as session:
            self._row(session, job_id)
            rows = session.scalars(
                select(LogRow)
                .where(LogRow.job_id == job_id, LogRow.id > after)
                .order_by(LogRow.id)
                .limit(limit)
            ).all()
            return [LogLine(id=r.id, at=r.at, stream=r.stream, line=r.line) for r in rows]


def _with_items(records: list[JobRecord], connection: Connection) -> list[JobRecord]:
    """`records` with their per-item counts (one grouped query for the lot)."""
    if records:
        counts = item_counts(connection, [record.id for record in records])
        for record in records:
            record.items = counts.get(record.id)
    return records


def _new_row(new: NewJob, now: datetime) -> dict[str, Any]:
    return {
        "id": new.job_id,
        "name": new.spec.name,
        "spec": new.spec.model_dump(mode="json"),
        "status": Status.NEW.value,
        "attempt": 0,
        "max_attempts": new.max_attempts,
        "reason": None,
        "source": new.source,
        "event_id": new.event_id,
        "created_at": now,
        "updated_at": now,
        "lease_owner": None,
        "lease_expires_at": None,
        "not_before": now,
        "stop_requested": False,
        "progress_done": None,
        "progress_total": None,
        "output_location": None,
        "model_info": None,
    }


def _unique(new_jobs: Sequence[NewJob]) -> list[NewJob]:
    """The first of each job id (a batch may name one twice: two events, one job)."""
    seen: dict[str, NewJob] = {}
    for new in new_jobs:
        seen.setdefault(new.job_id, new)
    return list(seen.values())
