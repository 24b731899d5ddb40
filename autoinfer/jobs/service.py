"""The job service: creation, the state machine's committed transitions, logs and leases.

Every status change is one transaction that checks the current status, so concurrent writers
(executor threads, API requests, other replicas) can never make an illegal move.
"""

from __future__ import annotations

import functools
import hashlib
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NoReturn

from sqlalchemy import Connection, Update, bindparam, func, insert, or_, select, update
from sqlalchemy.orm import Session, selectinload

from autoinfer.db import Database, utcnow
from autoinfer.errors import Conflict, IllegalTransition, NotFound
from autoinfer.jobs.infra import (
    MAX_INFRA_RETRIES,
    infra_give_up_reason,
    infra_retries,
    infra_retry_reason,
)
from autoinfer.jobs.items import item_counts
from autoinfer.jobs.records import JobRecord, LogLine, Progress, TransitionRecord
from autoinfer.jobs.spec import TERMINAL, JobSpec, Status, can_transition
from autoinfer.jobs.store import JobRow, LogRow, TransitionRow

LIVE_CLAIMED = (Status.WAITING_RESOURCES, Status.WAITING_DOWNLOAD, Status.RUNNING, Status.UPLOADING)
#: For each status, the statuses a job may enter it from (the state machine read backwards).
_PREDECESSORS: dict[Status, list[str]] = {
    status: [old.value for old in Status if can_transition(old, status)] for status in Status
}


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


#: Called inside the transaction that commits a job's end (finished, failed or stopped; not a
#: failed attempt that will be retried) with that transaction's connection and the job's row
#: as it now is (an ORM `JobRow` or a Core row of its columns): what must commit with the end,
#: such as the notifications outbox, goes in here.
TerminalHook = Callable[[Connection, Any], None]


def new_job_id() -> str:
    return uuid.uuid4().hex


def deterministic_job_id(*parts: str) -> str:
    """A job id derived from what caused the job, so that re-creating it is a no-op."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


class JobService:
    """All reads and writes of jobs go through here."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._terminal_hooks: list[TerminalHook] = []

    def add_terminal_hook(self, hook: TerminalHook) -> None:
        """Run `hook` in the transaction of every job's end (see `TerminalHook`)."""
        self._terminal_hooks.append(hook)

    def _ended(self, connection: Connection, row: Any) -> None:
        for hook in self._terminal_hooks:
            hook(connection, row)

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
            record = _record(self._row(session, job_id))
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
            return _with_items([_record(row) for row in rows], session.connection()), total

    def counts_by_status(self) -> dict[str, int]:
        with self.db.session() as session:
            rows = session.execute(select(JobRow.status, func.count()).group_by(JobRow.status))
            return {status: count for status, count in rows}

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
    ) -> None:
        """Move a job to `status`, committed with its timestamp; refuse illegal moves.

        With `owner`, the move only happens while that executor still holds the job's lease.
        What goes with the move — images done/total, the result, buffered log lines — commits
        in the same transaction. Every job passes here five times, so it is one compare-and-swap
        on the status (and lease) plus the inserts; a refused move is diagnosed afterwards
        (NotFound, IllegalTransition, or Conflict for a concurrent change or a lost lease).
        """
        now = utcnow()
        terminal = status in TERMINAL
        values: dict[str, Any] = {
            "job_id": job_id,
            "from": _PREDECESSORS[status],
            "owner": owner,
            "status": status.value,
            "now": now,
            "reason": reason,
            "kept_reason": reason if status != Status.FINISHED else None,
        }
        if progress is not None:
            values.update(done=progress[0], total=progress[1])
        if result is not None:
            values.update(output_location=result.output_location, model_info=result.model_info)
        statement = _compare_and_swap(
            owner is not None, terminal, progress is not None, result is not None
        )
        with self.db.connection() as connection:
            row = connection.execute(statement, values).first()
            if row is None:
                _refuse(connection, job_id, status, owner)
            connection.execute(_INSERT_TRANSITION, {**values, "attempt": row.attempt})
            if log_lines:
                connection.execute(insert(LogRow), _log_rows(job_id, log_lines))
            if terminal:
                self._ended(connection, row)

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
        session.add(
            TransitionRow(
                job_id=row.id, status=status.value, attempt=row.attempt, at=now, reason=reason
            )
        )
        if status in TERMINAL and self._terminal_hooks:
            self._ended(session.connection(), row)

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
                raise Conflict(
                    f"job {job_id}: only failed or stopped jobs can be retried (it is {row.status})"
                )
            self._requeue(session, row, "retry requested", delay_s, reset_budget=True)
            return _record(row)

    def _requeue(
        self,
        session: Session,
        row: JobRow,
        reason: str,
        delay_s: float,
        *,
        reset_budget: bool = False,
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

    def fail_or_retry(
        self, job_id: str, reason: str, *, owner: str, backoff_s: float, retry: bool = True
    ) -> JobRecord:
        """A failed attempt: retry later with backoff while attempts remain, else `failed`.
        `retry=False`: a failure no new attempt can change (the input itself is at fault)."""
        with self.db.session() as session:
            row = self._row(session, job_id, lock=True)
            if row.lease_owner != owner:
                raise Conflict(f"job {job_id}: lease is no longer held by {owner}")
            if retry and row.attempt < row.max_attempts and not row.stop_requested:
                delay = backoff_s * (2 ** (row.attempt - 1))
                self._requeue(session, row, f"attempt {row.attempt} failed: {reason}", delay)
            else:
                self._move(session, row, Status.FAILED, reason)
            return _record(row)

    # --- leases -------------------------------------------------------------------------

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
                _INSERT_TRANSITION,
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
            history = _transitions_of(connection, [row.id for row in rows])
        rows = sorted(rows, key=lambda row: (row.created_at, row.id))
        return [_record(row, history[row.id]) for row in rows]

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
                    self._move(session, row, Status.STOPPED, "stopped on request")
                elif retries < MAX_INFRA_RETRIES:
                    self._requeue(session, row, infra_retry_reason(lost, retries + 1), backoff_s)
                    row.attempt = max(0, row.attempt - 1)  # not counted against max_attempts
                else:
                    self._move(session, row, Status.FAILED, infra_give_up_reason(lost, retries))
                recovered.append(row.id)
        return recovered

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
        rows = _log_rows(job_id, lines)
        if not rows:
            return
        with self.db.connection() as connection:
            connection.execute(insert(LogRow), rows)

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


def _record(row: Any, transitions: Sequence[Any] | None = None) -> JobRecord:
    """The read model of a job row (an ORM row with its transitions, or a Core row and the
    transition rows given apart)."""
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
            for t in (row.transitions if transitions is None else transitions)
        ],
    )


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


def _log_rows(job_id: str, lines: Iterable[tuple[datetime, str, str]]) -> list[dict[str, Any]]:
    return [
        {"job_id": job_id, "at": at, "stream": stream, "line": line} for at, stream, line in lines
    ]


def _transitions_of(connection: Connection, job_ids: Sequence[str]) -> dict[str, list[Any]]:
    history: dict[str, list[Any]] = {job_id: [] for job_id in job_ids}
    for row in connection.execute(_TRANSITIONS_OF, {"ids": list(job_ids)}):
        history[row.job_id].append(row)
    return history


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
_TRANSITIONS_OF = (
    select(TransitionRow.__table__)
    .where(TransitionRow.job_id.in_(bindparam("ids", expanding=True)))
    .order_by(TransitionRow.id)
)


@functools.cache
def _compare_and_swap(owned: bool, terminal: bool, progress: bool, result: bool) -> Update:
    """The UPDATE of a transition, built once per shape (the hot path: SQLAlchemy's statement
    building costs more than SQLite's work); parameters as `JobService.transition` binds them."""
    guard = [JobRow.id == bindparam("job_id"), JobRow.status.in_(bindparam("from", expanding=True))]
    if owned:
        guard.append(JobRow.lease_owner == bindparam("owner"))
    values: dict[str, Any] = {"status": bindparam("status"), "updated_at": bindparam("now")}
    if terminal:
        values.update(reason=bindparam("kept_reason"), lease_owner=None, lease_expires_at=None)
    if progress:
        values.update(progress_done=bindparam("done"), progress_total=bindparam("total"))
    if result:
        values.update(
            output_location=bindparam("output_location"), model_info=bindparam("model_info")
        )
    statement = update(JobRow).where(*guard).values(**values)
    # A job's end hands its whole row to the terminal hooks; other moves need the attempt only.
    return statement.returning(*JobRow.__table__.columns if terminal else (JobRow.attempt,))


_INSERT_TRANSITION = insert(TransitionRow).values(
    job_id=bindparam("job_id"),
    status=bindparam("status"),
    attempt=bindparam("attempt"),
    at=bindparam("now"),
    reason=bindparam("reason"),
)


def _refuse(connection: Connection, job_id: str, status: Status, owner: str | None) -> NoReturn:
    """Why a compare-and-swap to `status` moved nothing, as the error to raise."""
    current = connection.execute(
        select(JobRow.status, JobRow.lease_owner).where(JobRow.id == job_id)
    ).one_or_none()
    if current is None:
        raise NotFound(f"job {job_id}: no such job")
    if owner is not None and current.lease_owner != owner:
        raise Conflict(f"job {job_id}: lease is no longer held by {owner}")
    old = Status(current.status)
    if not can_transition(old, status):
        raise IllegalTransition(f"job {job_id}: cannot go from '{old}' to '{status}'")
    raise Conflict(f"job {job_id}: changed by another writer before '{status}'")
