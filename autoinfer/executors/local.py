"""The local executor: a pool of threads on this machine, each running one job's Runner.

Jobs are claimed with leases that a heartbeat renews; `resources.cpu_count` is accounted
against the machine's cores, so a job waits in `waiting for resources` until its cores are free.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass

from autoinfer.errors import AutoInferError
from autoinfer.executors.base import Executor, executor_name
from autoinfer.jobs.records import JobRecord
from autoinfer.runner import Cancellation, Runner, RunnerContext

log = logging.getLogger("autoinfer.executor")


@dataclass
class _Running:
    job: JobRecord
    cpus: int
    cancellation: Cancellation
    thread: threading.Thread | None = None
    holds_cpus: bool = False  # past `waiting for resources`


class LocalExecutor(Executor):
    """Runs up to `max_jobs` jobs at once in this process."""

    def __init__(
        self,
        ctx: RunnerContext,
        *,
        max_jobs: int = 4,
        lease_s: float = 30.0,
        cpu_budget: int | None = None,
        poll_s: float = 0.5,
        owner: str | None = None,
    ) -> None:
        self.ctx = ctx
        self.jobs = ctx.jobs
        self.max_jobs = max_jobs
        self.lease_s = lease_s
        self.cpu_budget = cpu_budget or os.cpu_count() or 1
        self.poll_s = poll_s
        self.owner = owner or executor_name()
        self._running: dict[str, _Running] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

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
        self._stopping.set()
        self._wake.set()
        with self._lock:
            running = list(self._running.values())
        deadline = threading.Event()
        timer = threading.Timer(grace_s, deadline.set)
        timer.start()
        for item in running:
            if item.thread is not None:
                while item.thread.is_alive() and not deadline.is_set():
                    item.thread.join(0.1)
        timer.cancel()
        for item in running:
            item.cancellation.cancel("shutdown", "service shutting down")
        for item in running:
            if item.thread is not None:
                item.thread.join(15)
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
            busy_cpus = sum(r.cpus for r in self._running.values())
            return {
                "running": len(self._running),
                "max_jobs": self.max_jobs,
                "cpus_busy": busy_cpus,
                "cpus_total": self.cpu_budget,
            }

    # --- claiming -----------------------------------------------------------------------

    def _claim_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self._claim_once()
            except Exception:  # noqa: BLE001 - the loop must survive a database hiccup
                log.exception("claiming jobs failed; retrying")
            self._wake.wait(self.poll_s)
            self._wake.clear()

    def _free_cpus(self) -> int:
        return self.cpu_budget - sum(r.cpus for r in self._running.values() if r.holds_cpus)

    def _claim_once(self) -> None:
        while not self._stopping.is_set():
            with self._lock:
                if len(self._running) >= self.max_jobs or self._free_cpus() <= 0:
                    return
            claimed = self.jobs.claim(self.owner, self.lease_s, limit=1)
            if not claimed:
                return
            job = claimed[0]
            cpus = min(int(job.spec.get("resources", {}).get("cpu_count", 1)), self.cpu_budget)
            item = _Running(job=job, cpus=cpus, cancellation=Cancellation())
            with self._lock:
                self._running[job.id] = item
            item.thread = threading.Thread(
                target=self._run, args=(item,), name=f"autoinfer-job-{job.id[:8]}", daemon=True
            )
            item.thread.start()

    def _wait_for_cpus(self, item: _Running) -> bool:
        """Hold the job in `waiting for resources` until its cores are free."""
        while True:
            with self._lock:
                others = sum(r.cpus for r in self._running.values() if r.holds_cpus)
                if others + item.cpus <= self.cpu_budget:
                    item.holds_cpus = True
                    return True
            if item.cancellation.event.wait(0.2):
                return False

    def _run(self, item: _Running) -> None:
        job = item.job
        try:
            if self._wait_for_cpus(item):
                final = Runner(self.ctx, job, self.owner, item.cancellation).run()
            else:
                final = Runner(self.ctx, job, self.owner, item.cancellation)._end_cancelled()
            if final == "new":
                self.jobs.release(job.id, self.owner)
        except AutoInferError as error:
            log.warning("job %s: %s", job.id, error)
        except Exception:  # noqa: BLE001
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
        while not self._stopping.wait(interval):
            tick += 1
            try:
                with self._lock:
                    ids = list(self._running)
                for job_id in self.jobs.renew(ids, self.owner, self.lease_s):
                    with self._lock:
                        item = self._running.get(job_id)
                    if item is not None:
                        item.cancellation.cancel("stop", "stopped on request")
                if tick % recover_every == 0:
                    if self.jobs.recover_expired():
                        self._wake.set()
            except Exception:  # noqa: BLE001
                log.exception("lease heartbeat failed; retrying")
