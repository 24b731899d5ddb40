"""The one way a job's status changes: a compare-and-swap on its row plus its transition row.

`move` is the state machine's only write. Its UPDATE matches the job only while its status is
one the state machine allows the move from (and, with `owner`, while that owner holds the
lease); a refused move is diagnosed afterwards (`refuse`: NotFound, IllegalTransition, or
Conflict for a concurrent change or a lost lease). The hot path (`JobService.transition`, five
times per job) calls it on a Core connection; the rarer moves that read the job first (stop,
retry, requeue, recovery) call `move_row` with their ORM row, which it keeps in step.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, NoReturn

from sqlalchemy import Connection, Update, bindparam, insert, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from autoinfer.db import utcnow
from autoinfer.errors import Conflict, IllegalTransition, NotFound
from autoinfer.jobs.records import JobRecord, Progress, TransitionRecord
from autoinfer.jobs.spec import TERMINAL, Status, can_transition
from autoinfer.jobs.store import JobRow, TransitionRow

#: Called inside the transaction that commits a job's end (finished, failed or stopped; not a
#: failed attempt that will be retried) with that transaction's connection and the job's row
#: as it now is (a Core row of its columns): what must commit with the end, such as the
#: notifications outbox, goes in here.
TerminalHook = Callable[[Connection, Any], None]

#: For each status, the statuses a job may enter it from (the state machine read backwards).
_PREDECESSORS: dict[Status, list[str]] = {
    status: [old.value for old in Status if can_transition(old, status)] for status in Status
}


def move(
    connection: Connection,
    job_id: str,
    status: Status,
    *,
    reason: str | None = None,
    owner: str | None = None,
    progress: tuple[int, int] | None = None,
    result: tuple[str | None, dict[str, Any] | None] | None = None,
    ended: TerminalHook | None = None,
    now: datetime | None = None,
) -> Any:
    """Move job `job_id` to `status` in `connection`'s transaction, or raise why not; returns
    the row the UPDATE returned (every column for a terminal move, else the attempt).

    With `owner`, only while that owner holds the lease. `progress` (done, total) and `result`
    (output location, model info) are stored with the move; `ended` runs on a terminal one."""
    now = now or utcnow()
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
        values.update(output_location=result[0], model_info=result[1])
    statement = _compare_and_swap(
        owner is not None, terminal, progress is not None, result is not None
    )
    row = connection.execute(statement, values).first()
    if row is None:
        refuse(connection, job_id, status, owner)
    connection.execute(INSERT_TRANSITION, {**values, "attempt": row.attempt})
    if terminal and ended is not None:
        ended(connection, row)
    return row


def move_row(
    session: Session,
    row: JobRow,
    status: Status,
    reason: str | None,
    *,
    ended: TerminalHook | None = None,
) -> None:
    """`move` for a job the caller holds as an ORM row in `session`: the same statement on the
    session's transaction, and `row` updated to match (without a second write)."""
    now = utcnow()
    move(session.connection(), row.id, status, reason=reason, ended=ended, now=now)
    set_committed_value(row, "status", status.value)
    set_committed_value(row, "updated_at", now)
    if status in TERMINAL:
        set_committed_value(row, "reason", reason if status != Status.FINISHED else None)
        set_committed_value(row, "lease_owner", None)
        set_committed_value(row, "lease_expires_at", None)


def requeue(
    session: Session,
    row: JobRow,
    reason: str,
    delay_s: float,
    *,
    reset_budget: bool = False,
) -> None:
    """Back to `new`, claimable again after `delay_s`; `reset_budget`: one more attempt allowed."""
    move_row(session, row, Status.NEW, reason)
    row.reason = None
    row.stop_requested = False
    row.lease_owner = None
    row.lease_expires_at = None
    row.progress_done = None
    row.progress_total = None
    row.not_before = utcnow() + timedelta(seconds=delay_s)
    if reset_budget:
        row.max_attempts = max(row.max_attempts, row.attempt + 1)


def refuse(connection: Connection, job_id: str, status: Status, owner: str | None) -> NoReturn:
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


def to_record(row: Any, transitions: Sequence[Any] | None = None) -> JobRecord:
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


def transitions_of(connection: Connection, job_ids: Sequence[str]) -> dict[str, list[Any]]:
    """The transition rows of each of `job_ids`, oldest first."""
    history: dict[str, list[Any]] = {job_id: [] for job_id in job_ids}
    for row in connection.execute(_TRANSITIONS_OF, {"ids": list(job_ids)}):
        history[row.job_id].append(row)
    return history


def log_rows(job_id: str, lines: Iterable[tuple[datetime, str, str]]) -> list[dict[str, Any]]:
    """Log lines (at, stream, text) as rows to insert."""
    return [
        {"job_id": job_id, "at": at, "stream": stream, "line": line} for at, stream, line in lines
    ]


@functools.cache
def _compare_and_swap(owned: bool, terminal: bool, progress: bool, result: bool) -> Update:
    """The UPDATE of a move, built once per shape (the hot path: SQLAlchemy's statement
    building costs more than SQLite's work); parameters as `move` binds them."""
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


INSERT_TRANSITION = insert(TransitionRow).values(
    job_id=bindparam("job_id"),
    status=bindparam("status"),
    attempt=bindparam("attempt"),
    at=bindparam("now"),
    reason=bindparam("reason"),
)
_TRANSITIONS_OF = (
    select(TransitionRow.__table__)
    .where(TransitionRow.job_id.in_(bindparam("ids", expanding=True)))
    .order_by(TransitionRow.id)
)
