"""Followed log streams (`GET /v1/jobs/{id}/logs?follow=true`): capped, and woken, not spun.

Each open stream holds a slot: at most `follow_streams_per_key` per API key and
`follow_streams_total` in all (429 past either). An idle stream does not poll the database
itself: it waits on `FollowStreams.wait`, and one shared watcher looks, every `interval_s`, at
the newest log line and the status of every followed job in two queries, waking only the
streams whose job moved. Polling the database (not an in-process signal) keeps streams live
when another replica runs the job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import func, select

from autoinfer.api.limits import LimitsConfig
from autoinfer.db import Database
from autoinfer.errors import TooManyRequests
from autoinfer.jobs.store import JobRow, LogRow

POLL_INTERVAL_S = 0.25
log = logging.getLogger("autoinfer.api")


@dataclass(eq=False)
class _Waiter:
    job_id: str
    after: int
    status: str
    woken: asyncio.Event = field(default_factory=asyncio.Event)


class FollowStreams:
    """The slots of open follow streams and the watcher that wakes them."""

    def __init__(self, limits: LimitsConfig, *, interval_s: float = POLL_INTERVAL_S) -> None:
        self.limits = limits
        self.interval_s = interval_s
        self._open: Counter[str] = Counter()
        self._waiters: set[_Waiter] = set()
        self._watcher: asyncio.Task[None] | None = None

    @property
    def open(self) -> int:
        return sum(self._open.values())

    def acquire(self, who: str) -> Callable[[], None]:
        """A slot for one more stream of `who` (a key id or name); its release function.
        TooManyRequests when `who` or the service has no slot left."""
        if self._open[who] >= self.limits.follow_streams_per_key:
            raise TooManyRequests(
                f"{self._open[who]} log streams already open with this key "
                f"(limit {self.limits.follow_streams_per_key}; limits.follow_streams_per_key)"
            )
        if self.open >= self.limits.follow_streams_total:
            raise TooManyRequests(
                f"{self.open} log streams already open on this service "
                f"(limit {self.limits.follow_streams_total}; limits.follow_streams_total)"
            )
        self._open[who] += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._open[who] -= 1
                if self._open[who] <= 0:
                    del self._open[who]

        return release

    async def wait(
        self, db: Database, job_id: str, after: int, status: str, timeout: float
    ) -> bool:
        """Wait until job `job_id` has a log line past `after` or leaves `status`: True, or
        False after `timeout` seconds without either."""
        waiter = _Waiter(job_id, after, status)
        self._waiters.add(waiter)
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.create_task(self._watch(db))
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter.woken.wait(), timeout)
            return waiter.woken.is_set()
        finally:
            self._waiters.discard(waiter)

    async def _watch(self, db: Database) -> None:
        """While anyone waits: look at every followed job, wake those that moved."""
        while self._waiters:
            await asyncio.sleep(self.interval_s)
            waiters = list(self._waiters)
            if not waiters:
                return
            try:
                newest, statuses = await asyncio.to_thread(
                    _look, db, sorted({w.job_id for w in waiters})
                )
            except Exception as error:  # noqa: BLE001 - the store is down: look again later
                log.warning("log streams: cannot look at the followed jobs: %s", error)
                continue
            for waiter in waiters:
                moved = newest.get(waiter.job_id, 0) > waiter.after
                if moved or statuses.get(waiter.job_id, waiter.status) != waiter.status:
                    waiter.woken.set()


def _look(db: Database, job_ids: list[str]) -> tuple[dict[str, int], dict[str, str]]:
    """The newest log line id and the status of each job, in two queries."""
    with db.connection() as connection:
        newest = dict(
            connection.execute(
                select(LogRow.job_id, func.max(LogRow.id))
                .where(LogRow.job_id.in_(job_ids))
                .group_by(LogRow.job_id)
            ).all()
        )
        statuses = dict(
            connection.execute(select(JobRow.id, JobRow.status).where(JobRow.id.in_(job_ids))).all()
        )
    return newest, statuses
