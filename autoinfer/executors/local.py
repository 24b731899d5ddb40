"""The local executor: a pool of threads on this machine, each running one job's Runner.

Jobs are claimed with leases that a heartbeat renews (`executors.leasing`);
`resources.cpu_count` is accounted against the machine's cores, so a job waits in
`waiting for resources` until its cores are free, and `resources.gpu_count` against the
machine's GPUs (`executors.gpus`: inventory, allocator and the policy for requests it cannot
meet). A job for a built-in model holds no cores and no GPUs here: its images run in the
shared predictor pool, so up to `pool_jobs` (predictors.max_jobs) of them feed it at once, besides
the `max_jobs` worker-command jobs. One that asks for a GPU (`gpu_count ≥ 1`) runs in the model's
CUDA worker group, shared by such jobs (`predictors.devices.job_device`: where there is none, the
policy of `executors.gpus`, said in the job's log or its failure reason).
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from autoinfer.errors import NotFound
from autoinfer.executors.gpus import Gpu, GpuAllocator, GpuGrant, detect_inventory
from autoinfer.executors.leasing import HeldJob, LeasingExecutor
from autoinfer.jobs.records import JobRecord
from autoinfer.jobs.service import LIVE_CLAIMED, JobService
from autoinfer.jobs.spec import Status
from autoinfer.predictors.devices import JobDevice, job_device
from autoinfer.resume import resumed_job
from autoinfer.runner import Runner, RunnerContext, runs_in_predictor_pool

log = logging.getLogger("autoinfer.executor")

#: How long a job waiting for a slot sleeps between looks at its cancellation (a freed slot
#: wakes it at once).
SLOT_WAIT_S = 0.2


@dataclass(eq=False)
class _LocalJob(HeldJob):
    cpus: int = 1
    holds_cpus: bool = False  # past `waiting for resources`
    holds_slot: bool = False  # counted against `max_jobs` (worker commands) or `pool_jobs`
    gpu_count: int = 0
    gpu_types: tuple[str, ...] = ()
    accounts_gpus: bool = False  # a worker-command job: given GPUs (maybe none) by the allocator
    gpus: GpuGrant | None = None  # what it holds once started


class LocalExecutor(LeasingExecutor):
    """Runs up to `max_jobs` worker-command jobs at once in this process, and besides them up
    to `pool_jobs` built-in model jobs (which hold no cores: their images queue for the warm
    pool, whose workers are the limit)."""

    def __init__(
        self,
        ctx: RunnerContext,
        jobs: JobService,
        *,
        max_jobs: int = 4,
        lease_s: float = 30.0,
        cpu_budget: int | None = None,
        pool_jobs: int = 16,
        poll_s: float = 0.5,
        owner: str | None = None,
        gpus: Sequence[Gpu] | None = None,
    ) -> None:
        super().__init__(ctx, jobs, max_jobs=max_jobs, lease_s=lease_s, poll_s=poll_s, owner=owner)
        self.cpu_budget = cpu_budget or os.cpu_count() or 1
        self.pool_jobs = pool_jobs
        # Notified when a job gives its slot back, one per kind (pool or not): one claimed job
        # waiting for a slot of that kind wakes then, instead of every waiting job polling.
        self._slot_freed = {pool: threading.Condition(self._lock) for pool in (True, False)}
        # `gpus`: the configured inventory; None: detected on this machine.
        self.gpu_allocator = GpuAllocator(detect_inventory() if gpus is None else gpus)
        log.info(
            "GPUs for worker commands: %s (%s)",
            self.gpu_allocator.describe(),
            "detected" if gpus is None else "configured",
        )

    def stats(self) -> dict[str, int]:
        with self._lock:
            busy_cpus = sum(r.cpus for r in self._running.values())
            return {
                "running": len(self._running),
                "max_jobs": self.max_jobs,
                "cpus_busy": busy_cpus,
                "cpus_total": self.cpu_budget,
                "gpus_busy": self.gpu_allocator.busy(),
                "gpus_total": len(self.gpu_allocator.inventory),
            }

    # --- the leasing executor's hooks ---------------------------------------------------

    def _admit(self, job: JobRecord) -> _LocalJob:
        resources = job.spec.get("resources", {})
        cpus = min(int(resources.get("cpu_count", 1)), self.cpu_budget)
        if runs_in_predictor_pool(job.spec):
            # Its images run in the shared warm pool, which has the cores (and GPUs) already.
            return _LocalJob(job, cpus=0)
        types = [resources.get("gpu_type"), *(resources.get("gpu_types") or [])]
        return _LocalJob(
            job,
            cpus=cpus,
            gpu_count=int(resources.get("gpu_count", 0)),
            gpu_types=tuple(t for t in types if t),
            accounts_gpus=True,
        )

    def _has_room(self) -> bool:
        return self._free_cpus() > 0

    def _room(self) -> int:
        """Free `pool_jobs` slots, plus free `max_jobs` slots while a core is free. The claim
        cannot pick the kind of job it gets: one that finds no slot of its kind waits for one
        (`_take_slot`)."""
        in_pool = sum(1 for r in self._running.values() if runs_in_predictor_pool(r.job.spec))
        room = max(0, self.pool_jobs - in_pool)
        if self._has_room():
            room += max(0, self.max_jobs - (len(self._running) - in_pool))
        return room

    def _take_slot(self, item: _LocalJob) -> bool:
        """Wait (in `waiting for resources`) for a slot of the job's kind; False: cancelled."""
        pool = runs_in_predictor_pool(item.job.spec)
        limit = self.pool_jobs if pool else self.max_jobs
        freed = self._slot_freed[pool]
        with freed:
            while not item.cancellation.is_set:
                holding = sum(
                    1
                    for r in self._running.values()
                    if r.holds_slot and runs_in_predictor_pool(r.job.spec) == pool
                )
                if holding < limit:
                    item.holds_slot = True
                    return True
                # Woken when a slot frees; the timeout only bounds how late a cancel is seen.
                freed.wait(SLOT_WAIT_S)
        return False

    def _give_slot_back(self, item: _LocalJob) -> None:
        freed = self._slot_freed[runs_in_predictor_pool(item.job.spec)]
        with freed:
            if item.holds_slot:
                item.holds_slot = False
                freed.notify()  # one slot: one waiter of its kind

    def _started(self, item: _LocalJob) -> bool:
        return item.holds_cpus

    def _execute(self, item: _LocalJob) -> str:
        if not self._take_slot(item):
            return Runner(self.ctx, item.job, self.owner, item.cancellation)._end_cancelled()
        try:
            return self._execute_in_slot(item)
        finally:
            self._give_slot_back(item)

    def _execute_in_slot(self, item: _LocalJob) -> str:
        runner = Runner(self.ctx, item.job, self.owner, item.cancellation)
        if runs_in_predictor_pool(item.job.spec):
            where = self._pool_device(item.job.spec)
            if where.fails and where.note:  # the inventory is fixed: waiting could never end
                return runner._end(Status.FAILED, where.note, retry=False)
            if where.note:
                runner.log.system(where.note)
            runner.device = where.device
        if item.accounts_gpus and item.gpu_count:
            problem = self.gpu_allocator.impossible(item.gpu_count, item.gpu_types)
            if problem is not None:  # the inventory is fixed: waiting could never end
                return runner._end(Status.FAILED, problem, retry=False)
            if not self.gpu_allocator.inventory:
                runner.log.system(
                    f"this machine has no GPUs: running on its CPU (the job asked for "
                    f"{item.gpu_count})"
                )
        try:
            ready = self._wait_for_resources(item, runner)
            runner.gpus = item.gpus
            return runner.run() if ready else runner._end_cancelled()
        finally:
            self.gpu_allocator.release(item.job.id)

    def _pool_device(self, spec: dict) -> JobDevice:
        """Where a built-in model job runs: its GPU request against this machine's GPUs (the
        shared CUDA group holds none of the allocator's: its GPU is `predictors.cuda_device`)."""
        resources = spec.get("resources", {})
        count = int(resources.get("gpu_count", 0))
        types = [t for t in [resources.get("gpu_type"), *(resources.get("gpu_types") or [])] if t]
        problem = self.gpu_allocator.impossible(count, types)
        if problem is not None:
            return JobDevice(None, problem, fails=True)
        return job_device(count, machine_has_gpus=bool(self.gpu_allocator.inventory))

    def _housekeeping(self) -> None:
        remove_stale_scratch(self.ctx.scratch_root, self.jobs, lambda: set(self._running))

    # --- cores --------------------------------------------------------------------------

    def _free_cpus(self) -> int:
        return self.cpu_budget - sum(r.cpus for r in self._running.values() if r.holds_cpus)

    def _wait_for_resources(self, item: _LocalJob, runner: Runner) -> bool:
        """Hold the job in `waiting for resources` until its cores and its GPUs are free; it
        then holds both (False: cancelled while waiting)."""
        told = False
        wanted = item.gpu_count if self.gpu_allocator.inventory else 0
        while True:
            short_of_gpus = False
            with self._lock:
                others = sum(r.cpus for r in self._running.values() if r.holds_cpus)
                if others + item.cpus <= self.cpu_budget:
                    grant = self.gpu_allocator.try_acquire(item.job.id, wanted, item.gpu_types)
                    if grant is not None:
                        item.gpus = grant if item.accounts_gpus else None
                        item.holds_cpus = True
                        return True
                    short_of_gpus = True
            if short_of_gpus and not told:
                told = True
                allocator = self.gpu_allocator
                runner.log.system(
                    f"waiting for {wanted} GPU(s) ({' or '.join(item.gpu_types) or 'any type'}): "
                    f"{allocator.busy()} of {len(allocator.inventory)} in use"
                )
                runner.log.flush()
            if item.cancellation.event.wait(0.2):
                return False


LIVE = frozenset(status.value for status in LIVE_CLAIMED)


def remove_stale_scratch(
    scratch_root: Path, jobs: JobService, held: Callable[[], set[str]]
) -> list[str]:
    """Remove the folders (`<job id>-<attempt>`) that attempts killed with their service left
    behind: those of jobs that are no longer running that attempt, and not `held` here; and
    the kept predictions of jobs that ended (`<job id>.resume`, see `autoinfer.resume`).
    Returns the names removed."""
    try:
        folders = [p for p in scratch_root.iterdir() if p.is_dir()]
    except FileNotFoundError:
        return []
    stale = []
    for folder in folders:
        resumes = resumed_job(folder.name)  # kept while the job may run again
        job_id, _, attempt = folder.name.rpartition("-")
        try:
            job = jobs.get(resumes or job_id)
        except NotFound:
            stale.append(folder)
            continue
        if resumes is not None:
            if job.terminal:
                stale.append(folder)
        elif job.status not in LIVE or str(job.attempt) != attempt:
            stale.append(folder)
    running = held()  # read after the statuses: a job claimed meanwhile is in it
    removed = []
    for folder in stale:
        if folder.name.rpartition("-")[0] not in running:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder.name)
    return removed
