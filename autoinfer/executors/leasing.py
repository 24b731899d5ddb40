"""Claiming jobs with leases, shared by every executor: where a job runs differs, how it is held
does not.

A claim loop takes queued jobs while there is room; a heartbeat renews the leases of the jobs
held (a job whose executor dies is requeued by whoever sees its lease expire) and turns a stop
request into a `Cancellation`; shutdown hands back whatever has not finished in time. A
concrete executor says how one claimed job runs (`_execute`), and optionally when it has room
(`_has_room`) and whether a held job has started yet (`_started`).
"""

from __future__ import annotations

import logging
import threading
import time
from abc import abstractmethod
from dataclasses import dataclass, field
from typing import Any

from autoinfer.errors import AutoInferError
from autoinfer.executors.base import Executor, executor_name
from autoinfer.jobs.records import JobRecord
from autoinfer.jobs.service import JobService
from autoinfer.logging_setup import log_context
from autoinfer.runner import Cancellation, RunnerContext

log = logging.getLogger("autoinfer.executor")


@dataclass(eq=False)
class HeldJob:
    """A job this executor holds the lease of, and the means to end it early."""

    job: JobRecord
    cancellation: Cancellation = field(default_factory=Cancellation)
    thread: threading.Thread | None = None


class LeasingExecutor(Executor):
    """Claims up to `max_jobs` jobs, each driven by a thread of this process that runs
    `_execute` and renews the job's lease while it runs."""

    def __init__(
        self,
        ctx: RunnerContext,
        jobs: JobService,
        *,
        max_jobs: int = 4,
        lease_s: float = 30.0,
        poll_s: float = 0.5,
        owner: str | None = None,
    ) -> None:
        self.ctx = ctx
        # The queue jobs are claimed from (ctx.jobs, what runners report through, is the same
        # service here; on a Ray node it is a mailbox that cannot claim).
        self.jobs = jobs
        self.max_jobs = max_jobs
        self.lease_s = lease_s
        self.poll_s = poll_s
        self.owner = owner or executor_name()
        self._running: dict[str, Any] = {}  # job id → HeldJob (or a subclass)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()  # no more claiming
        self._closed = threading.Event()  # every job settled: the heartbeat may end
        self._threads: list[threading.Thread] = []

    # --- what a concrete executor provides ------------------------------------------------

    @abstractmethod
    def _execute(self, item: Any) -> str:
        """Run the held job to its end; the final status, or 'new' to hand it back."""

    def _admit(self, job: JobRecord) -> HeldJob:
        """The bookkeeping for a job just claimed."""
        return HeldJob(job)

    def _has_room(self) -> bool:
        """Whether another job may be claimed now (called with the lock held)."""
        return True

    def _room(self) -> int:
        """How many jobs may be claimed now (called with the lock held)."""
        return self.max_jobs - len(self._running) if self._has_room() else 0

    def _started(self, item: Any) -> bool:
        """Whether the job got past `waiting for resources`; one that has not is handed back
        at once on shutdown instead of being given the grace period."""
        return True

    def _housekeeping(self) -> None:
        """Called on every heartbeat tick, for an executor's own periodic work."""

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        self.jobs.recover_expired()
        for target, name in ((self._claim_loop, "claim"), (self._heartbeat_loop, "heartbeat")):
            thread = threading.Thread(target=target, name=f"autoinfer-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def wake(self) -> None:
        self._wake.set()

    def stop(self, grace_s: float = 30.0) -> None:
        """Stop claiming; jobs already running get `grace_s` to finish, jobs still waiting for
        resources are handed back at once, and so is every job still running when the grace
        period ends (its attempt is not spent). Leases are renewed until the last job is settled."""
        self._stopping.set()
        self._wake.set()
        claim_loop = self._threads[0] if self._threads else None
        if claim_loop is not None:
            claim_loop.join(60)  # after it ends, no job can start any more
        deadline = time.monotonic() + grace_s
        with self._lock:
            running = list(self._running.values())
            waiting = [item for item in running if not self._started(item)]
        for item in waiting:
            item.cancellation.cancel("shutdown", "service shutting down before the job started")
        for item in running:
            while item.thread is not None and item.thread.is_alive():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                item.thread.join(min(0.1, left))
        left_over = [item for item in running if item.thread is not None and item.thread.is_alive()]
        if left_over:
            log.info("grace period of %g s over: handing back %d job(s)", grace_s, len(left_over))
        for item in left_over:
            item.cancellation.cancel(
                "shutdown", f"service shutting down (grace period {grace_s:g} s)"
            )
        for item in left_over:
            if item.thread is not None:
                item.thread.join(15)
        self._closed.set()
        for thread in self._threads:
            thread.join(5)

    def cancel(self, job_id: str, reason: str = "stopped on request") -> bool:
        """Stop a job this executor runs, at once; False if it does not run it."""
        with self._lock:
            item = self._running.get(job_id)
        if item is None:
            return False
        item.cancellation.cancel("stop", reason)
        return True

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"running": len(self._running), "max_jobs": self.max_jobs}

    # --- claiming -----------------------------------------------------------------------

    def _claim_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self._claim_once()
            except Exception:  # the loop must survive a database hiccup
                log.exception("claiming jobs failed; retrying")
            self._wake.wait(self.poll_s)
            self._wake.clear()

    def _claim_once(self) -> None:
        """Claim while there is room, as many jobs per database call as there is room for."""
        while not self._stopping.is_set():
            with self._lock:
                room = self._room()
                if room <= 0:
                    return
            claimed = self.jobs.claim(self.owner, self.lease_s, limit=room)
            if not claimed:
                return
            for job in claimed:
                item = self._admit(job)
                with self._lock:
                    self._running[item.job.id] = item
                item.thread = threading.Thread(
                    target=self._run,
                    args=(item,),
                    name=f"autoinfer-job-{item.job.id[:8]}",
                    daemon=True,
                )
                item.thread.start()

    def _run(self, item: HeldJob) -> None:
        with log_context(job_id=item.job.id):  # every log line of this job carries its id
            self._run_attempt(item)

    def _run_attempt(self, item: HeldJob) -> None:
        job = item.job
        try:
            if self._execute(item) == "new":
                self.jobs.release(job.id, self.owner)
        except AutoInferError as error:
            log.warning("job %s: %s", job.id, error)
        except Exception:
            log.exception("job %s: runner crashed", job.id)
        finally:
            with self._lock:
                self._running.pop(job.id, None)
            self._wake.set()

    # --- leases -------------------------------------------------------------------------

    def _heartbeat_loop(self) -> None:
        interval = max(0.2, self.lease_s / 3)
        recover_every = max(1, int(self.lease_s / interval))
        tick = 0
        while not self._closed.wait(interval):
            tick += 1
            try:
                with self._lock:
                    ids = list(self._running)
                for job_id in self.jobs.renew(ids, self.owner, self.lease_s):
                    with self._lock:
                        item = self._running.get(job_id)
                    if item is not None:
                        item.cancellation.cancel("stop", "stopped on request")
                if tick % recover_every == 0 and self.jobs.recover_expired():
                    self._wake.set()
                self._housekeeping()
            except Exception:
                log.exception("lease heartbeat failed; retrying")
