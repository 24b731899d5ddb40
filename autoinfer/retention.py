"""Retention: the periodic sweep that removes what is older than `retention:` says.

What goes, each from its own age (`0` days keeps it forever):

- `jobs_days`: ended jobs (finished, failed, stopped) that ended that long ago, with their
  transitions, log lines, gallery and the rows of any other table that points at them;
- `logs_days`: the log lines of ended jobs (the job record stays);
- `gallery_days`: the thumbnails the dashboard shows (a gallery of a job that runs again is
  kept);
- `events_days`: settled inbox rows (pending ones wait for dispatch) with their dispatches.

Live work — jobs `new`, waiting, running or uploading — is never touched, whatever its age.
Rows go `batch_size` at a time, one short transaction each, so the pipeline's own writes get
their turn between batches.

Duplicate protection. An event's inbox row carries its dedup key: once it is removed, a
redelivery of that event is stored as a new event. A rule trigger's job id is derived from the
trigger and the event's idempotency key, so while the job is kept (`jobs_days`) the redelivery
settles `matched` on that same job and starts nothing; only after both the event and its job
are gone would a redelivery make a new job. S3 and SQS redeliver within minutes to days (SQS
keeps a message 14 days at most), so the 30-day defaults leave a wide margin.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, Table, delete, select

from autoinfer.config import RetentionConfig
from autoinfer.db import Database, utcnow
from autoinfer.gallery import Gallery
from autoinfer.inbox import EventRow, Outcome
from autoinfer.jobs.spec import TERMINAL
from autoinfer.jobs.store import JobRow, LogRow
from autoinfer.schema import metadata

log = logging.getLogger("autoinfer.retention")

ENDED = sorted(status.value for status in TERMINAL)


@dataclass
class SweepReport:
    """What one sweep removed."""

    jobs: int = 0
    log_lines: int = 0
    galleries: int = 0
    events: int = 0

    @property
    def total(self) -> int:
        return self.jobs + self.log_lines + self.galleries + self.events


class RetentionSweep:
    """Removes expired rows and files; `clock` says what time it is (tests move it)."""

    def __init__(
        self,
        db: Database,
        gallery: Gallery,
        config: RetentionConfig,
        *,
        clock: Callable[[], datetime] = utcnow,
        stopping: threading.Event | None = None,
    ) -> None:
        self.db = db
        self.gallery = gallery
        self.config = config
        self.clock = clock
        self.stopping = stopping or threading.Event()

    def run(self) -> SweepReport:
        """One full sweep, batch after batch until nothing expired is left (or `stopping`)."""
        report = SweepReport()
        now = self.clock()
        if self.config.jobs_days:
            report.jobs, removed = self._sweep_jobs(self._cutoff(now, self.config.jobs_days))
            for job_id in removed:
                self.gallery.delete(job_id)
            report.galleries += len(removed)
        if self.config.logs_days:
            report.log_lines = self._sweep_logs(self._cutoff(now, self.config.logs_days))
        if self.config.gallery_days:
            report.galleries += self._sweep_galleries(self._cutoff(now, self.config.gallery_days))
        if self.config.events_days:
            report.events = self._sweep_events(self._cutoff(now, self.config.events_days))
        if report.total:
            log.info(
                "retention: removed %d job(s), %d log line(s), %d galler(y/ies), %d event(s)",
                report.jobs,
                report.log_lines,
                report.galleries,
                report.events,
            )
        return report

    @staticmethod
    def _cutoff(now: datetime, days: float) -> datetime:
        return now - timedelta(days=days)

    # --- jobs -----------------------------------------------------------------------------

    def _sweep_jobs(self, cutoff: datetime) -> tuple[int, list[str]]:
        """Ended jobs older than `cutoff`, their transitions, logs and every row pointing at
        them (tables other parts add, such as per-item results, included)."""
        removed: list[str] = []
        children = _tables_pointing_at(_table(JobRow))
        while not self.stopping.is_set():
            query = (
                select(JobRow.id)
                .where(JobRow.status.in_(ENDED), JobRow.updated_at < cutoff)
                .order_by(JobRow.updated_at)
                .limit(self.config.batch_size)
            )
            if not self.db.is_sqlite:  # a concurrent retry waits for (or skips) this batch
                query = query.with_for_update(skip_locked=True)
            with self.db.connection() as connection:
                ids = list(connection.scalars(query))
                if ids:
                    _delete_with_children(connection, _table(JobRow), children, ids)
            removed += ids
            if len(ids) < self.config.batch_size:
                break
        return len(removed), removed

    def _sweep_logs(self, cutoff: datetime) -> int:
        """Log lines of jobs that ended before `cutoff` (their records stay)."""
        removed = 0
        while not self.stopping.is_set():
            ended = select(JobRow.id).where(JobRow.status.in_(ENDED), JobRow.updated_at < cutoff)
            with self.db.connection() as connection:
                ids = list(
                    connection.scalars(
                        select(LogRow.id)
                        .where(LogRow.job_id.in_(ended))
                        .limit(self.config.batch_size)
                    )
                )
                if ids:
                    connection.execute(delete(LogRow).where(LogRow.id.in_(ids)))
            removed += len(ids)
            if len(ids) < self.config.batch_size:
                break
        return removed

    # --- galleries ------------------------------------------------------------------------

    def _sweep_galleries(self, cutoff: datetime) -> int:
        """Galleries last written before `cutoff`, unless their job is live again (a retry)."""
        expired = [job_id for job_id, saved_at in self.gallery.saved() if saved_at < cutoff]
        removed = 0
        for start in range(0, len(expired), self.config.batch_size):
            if self.stopping.is_set():
                break
            batch = expired[start : start + self.config.batch_size]
            with self.db.connection() as connection:
                live = set(
                    connection.scalars(
                        select(JobRow.id).where(JobRow.id.in_(batch), JobRow.status.not_in(ENDED))
                    )
                )
            for job_id in batch:
                if job_id not in live:
                    self.gallery.delete(job_id)
                    removed += 1
        return removed

    # --- events ---------------------------------------------------------------------------

    def _sweep_events(self, cutoff: datetime) -> int:
        """Settled events received before `cutoff`, with their dispatches."""
        removed = 0
        children = _tables_pointing_at(_table(EventRow))
        while not self.stopping.is_set():
            with self.db.connection() as connection:
                ids = list(
                    connection.scalars(
                        select(EventRow.id)
                        .where(
                            EventRow.received_at < cutoff,
                            EventRow.outcome != Outcome.PENDING.value,
                        )
                        .order_by(EventRow.id)
                        .limit(self.config.batch_size)
                    )
                )
                if ids:
                    _delete_with_children(connection, _table(EventRow), children, ids)
            removed += len(ids)
            if len(ids) < self.config.batch_size:
                break
        return removed


def _table(row: type[JobRow | EventRow]) -> Table:
    """The Core table of an ORM class (typed as a Table, which `__table__` is not)."""
    return metadata.tables[row.__tablename__]


def _tables_pointing_at(parent: Table) -> list[tuple[Table, list[str]]]:
    """Each table with a foreign key to `parent`'s id, and its columns that hold it."""
    found = []
    for table in metadata.sorted_tables:
        columns = [
            fk.parent.name
            for fk in table.foreign_keys
            if fk.column.table is parent and fk.column.name == "id"
        ]
        if columns and table is not parent:
            found.append((table, columns))
    return found


def _delete_with_children(
    connection: Connection,
    parent: Table,
    children: Sequence[tuple[Table, list[str]]],
    ids: Sequence[object],
) -> None:
    """Delete `ids` from `parent` after the rows of `children` that point at them (some
    tables' foreign keys do not cascade)."""
    for table, columns in children:
        for column in columns:
            connection.execute(delete(table).where(table.c[column].in_(ids)))
    connection.execute(delete(parent).where(parent.c.id.in_(ids)))
