"""The overview's history: what the dashboard's first page charts over the last hour.

The service samples every `SAMPLE_S` seconds (its housekeeping thread): images this replica
classified, jobs that finished or failed (counted from the committed transitions, whichever
replica ran them), jobs waiting, events waiting for dispatch and, where the service keeps a
notification outbox, deliveries still pending. The history lives in memory (an hour of
samples); a restart begins a new one. `series()` adds a sample of this moment to what it
returns, so the charts follow the service between samples too.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any

from sqlalchemy import func, select

from autoinfer.db import Database, utcnow
from autoinfer.inbox import EventRow, Outcome
from autoinfer.jobs.spec import Status
from autoinfer.jobs.store import JobRow, TransitionRow

SAMPLE_S = 10.0
KEEP_MINUTES = 60
#: A sample of this moment is added to a series only this long after the last stored one
#: (a rate over a fraction of a second says little).
MIN_GAP_S = 2.0


@dataclass(frozen=True)
class Sample:
    at: datetime
    images: int  # images classified by this replica so far (its predictor pool's counter)
    finished: int  # jobs that finished since this history began (database-wide)
    failed: int  # jobs that failed for good since this history began (database-wide)
    queue: int  # jobs waiting to be claimed
    inbox: int  # events waiting for dispatch
    notifications: int | None  # notification deliveries pending; None without an outbox


class OverviewHistory:
    """Samples kept for `KEEP_MINUTES`; thread-safe. `clock` gives the wall-clock time."""

    def __init__(
        self,
        db: Database,
        images: Callable[[], int],
        *,
        notifications: Callable[[], int] | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.images = images
        self.notifications = notifications
        self.clock = clock
        self._samples: deque[Sample] = deque()
        self._lock = threading.Lock()
        self._cursor: int | None = None  # the highest transition id counted
        self._ended = {Status.FINISHED.value: 0, Status.FAILED.value: 0}

    def sample(self) -> Sample:
        """Take a sample and keep it."""
        sample = self._measure()
        with self._lock:
            self._samples.append(sample)
            horizon = sample.at - timedelta(minutes=KEEP_MINUTES + 1)
            while self._samples and self._samples[0].at < horizon:
                self._samples.popleft()
        return sample

    def series(self, minutes: int = KEEP_MINUTES) -> dict[str, Any]:
        """The last `minutes` as chart data: per-sample points and per-minute job counts."""
        now = self.clock()
        since = now - timedelta(minutes=minutes)
        with self._lock:
            samples = [s for s in self._samples if s.at >= since - timedelta(seconds=SAMPLE_S)]
        if not samples or (now - samples[-1].at).total_seconds() >= MIN_GAP_S:
            samples.append(self._measure())
        points: list[dict[str, Any]] = []
        for previous, sample in zip([None, *samples], samples, strict=False):
            rate = 0.0
            if previous is not None:
                seconds = (sample.at - previous.at).total_seconds()
                images = sample.images - previous.images
                if images < 0:  # the pool was recreated and counts from zero again
                    images = sample.images
                rate = images / seconds if seconds > 0 else 0.0
            points.append(
                {
                    "at": sample.at.isoformat(),
                    "images_per_s": round(rate, 3),
                    "queue": sample.queue,
                    "inbox": sample.inbox,
                    "notifications": sample.notifications,
                }
            )
        return {
            "minutes": minutes,
            "sample_s": SAMPLE_S,
            "now": now.isoformat(),
            "notifications": self.notifications is not None,
            "points": [p for p in points if p["at"] >= since.isoformat()],
            "per_minute": _per_minute(samples, now, minutes),
        }

    # --- measuring ------------------------------------------------------------------------

    def _measure(self) -> Sample:
        with self.db.connection() as connection:
            queue = connection.scalar(
                select(func.count()).select_from(JobRow).where(JobRow.status == Status.NEW.value)
            )
            inbox = connection.scalar(
                select(func.count())
                .select_from(EventRow)
                .where(EventRow.outcome == Outcome.PENDING.value)
            )
            finished, failed = self._count_ended(connection)
        return Sample(
            at=self.clock(),
            images=self.images(),
            finished=finished,
            failed=failed,
            queue=queue or 0,
            inbox=inbox or 0,
            notifications=self.notifications() if self.notifications is not None else None,
        )

    def _count_ended(self, connection: Any) -> tuple[int, int]:
        """Jobs that entered finished / failed since the first call, read from the
        transitions committed since the previous one."""
        with self._lock:
            if self._cursor is None:
                self._cursor = connection.scalar(select(func.max(TransitionRow.id))) or 0
            else:
                rows = connection.execute(
                    select(TransitionRow.status, func.count(), func.max(TransitionRow.id))
                    .where(
                        TransitionRow.id > self._cursor,
                        TransitionRow.status.in_(list(self._ended)),
                    )
                    .group_by(TransitionRow.status)
                ).all()
                top = connection.scalar(select(func.max(TransitionRow.id))) or self._cursor
                for status, count, _ in rows:
                    self._ended[status] += count
                self._cursor = max(self._cursor, top)
            return self._ended[Status.FINISHED.value], self._ended[Status.FAILED.value]


def _per_minute(samples: list[Sample], now: datetime, minutes: int) -> list[dict[str, Any]]:
    """Jobs finished and failed in each of the last `minutes` minutes (oldest first), each
    sample's increase counted in the minute it was taken."""
    current = now.replace(second=0, microsecond=0)
    starts = [current - timedelta(minutes=minutes - 1 - i) for i in range(minutes)]
    buckets = {start: {"finished": 0, "failed": 0} for start in starts}
    for previous, sample in pairwise(samples):
        bucket = buckets.get(sample.at.replace(second=0, microsecond=0))
        if bucket is not None:
            bucket["finished"] += max(0, sample.finished - previous.finished)
            bucket["failed"] += max(0, sample.failed - previous.failed)
    return [{"minute": start.isoformat(), **buckets[start]} for start in starts]
