"""The Ray executor: the same jobs, each run as a Ray task on a node of a cluster.

    service (this process)                                  a cluster node
    claims with leases, renews them  ── Ray task ──►   Runner: stage in → run → stage out
    applies the reports to the store ◄── mailbox ───   reports status, progress, log lines
    (the only process with the database)               (ReportingJobs), hears of a stop

The node's side (the task, the mailbox actor, `ReportingJobs`) is `executors.ray_node`.

Claiming, leases and shutdown are the local executor's (`executors.leasing`); only where a
job runs differs. The task asks Ray for the job's resources (`cpu_count` → `num_cpus`,
`gpu_count` → `num_gpus`, `gpu_type` → `accelerator_type`), so a job stays `waiting for
resources` until a node has them. Data is staged in and out by the task on its node and
never passes through the service; the node rebuilds the storage backends from the service's
store settings, with the secrets the job needs resolved by the service. Built-in models run in
model actors (`predictors.ray_pool`). A stop reaches the task through the mailbox and the
Runner ends the job as it does locally (a task that does not end in time is killed, and so is
one that never started); a task whose worker or node dies ends the attempt like a crash:
a new attempt while attempts remain.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoinfer.config import ExecutorConfig, PredictorsConfig
from autoinfer.db import utcnow
from autoinfer.errors import AutoInferError, ConfigError, Conflict

try:
    import ray
    from ray.exceptions import RayActorError, RayError, RayTaskError, TaskCancelledError
except ImportError:  # an optional extra
    raise ConfigError(
        "executor.type ray: Ray is not installed here; pip install 'autoinfer[ray]'"
    ) from None

from autoinfer.executors.leasing import HeldJob, LeasingExecutor
from autoinfer.executors.ray_node import MailboxActor, NodeContext, first_line, run_on_node
from autoinfer.executors.ray_placement import (
    placement_note,
    ray_accelerator_type,
    task_options,
)
from autoinfer.jobs.records import JobRecord
from autoinfer.jobs.service import JobService
from autoinfer.jobs.spec import JobSpec, Status
from autoinfer.predictors.ray_pool import RayPredictorPool
from autoinfer.runner import KILL_GRACE_S, RunnerContext, one_line, runs_in_predictor_pool

log = logging.getLogger("autoinfer.executor.ray")

PUMP_WAIT_S = 0.5  # the service's long poll for reports (they are applied as they arrive)
FORCE_AFTER_S = KILL_GRACE_S + 10  # a cancelled task still running then is killed
REPORTS = frozenset({"transition", "fail_or_retry", "set_progress", "set_result", "append_log"})


@dataclass(eq=False)
class _RayJob(HeldJob):
    ref: Any = None  # the task's ObjectRef
    started: bool = False  # the task runs (its first report arrived)
    lease_lost: bool = False  # the store says another executor holds the job now


class RayExecutor(LeasingExecutor):
    """Runs up to `max_jobs` jobs at once as Ray tasks on the cluster at `settings.address`:
    `ray://host:10001` (Ray Client), `auto` (the cluster this machine belongs to), `local`
    (start a Ray instance here), or None (Ray's default). When this process is already
    connected to Ray, that connection is used and left open on stop.

    Built-in models run in a `RayPredictorPool` set up like the local pool (`predictors`:
    `workers` actors per model, `batch_size`, `max_wait_ms`, ...; a job decodes its images in
    its own task, with one thread per CPU it holds); `cache_dir` is where the
    actors keep exported models (None, or a folder a node cannot create: the node's
    `~/.cache/autoinfer`)."""

    def __init__(
        self,
        ctx: RunnerContext,
        jobs: JobService,
        settings: ExecutorConfig | None = None,
        *,
        cache_dir: Path | str | None = None,
        predictors: PredictorsConfig | None = None,
        pool: RayPredictorPool | None = None,
        poll_s: float = 0.5,
        owner: str | None = None,
    ) -> None:
        settings = settings or ExecutorConfig(type="ray")
        super().__init__(
            ctx,
            jobs,
            max_jobs=settings.max_jobs,
            lease_s=settings.lease_s,
            poll_s=poll_s,
            owner=owner,
        )
        self.address = settings.address
        tuning = predictors or PredictorsConfig()
        self.pool = pool or RayPredictorPool(
            cache_dir=cache_dir,
            actors=tuning.worker_count,
            batch_size=tuning.batch_size,
            max_wait_ms=tuning.max_wait_ms,
            threads=tuning.threads_per_worker,
            idle_s=tuning.idle_s,
        )
        self._mailbox: Any = None
        self._owns_ray = False
        self._applied = threading.Condition()
        self._applied_sequence = 0  # the last report applied
        self._pump_stop = threading.Event()
        self._pump: threading.Thread | None = None
        self._cluster: tuple[float, dict[str, float]] = (0.0, {})

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        self._connect()
        self._mailbox = MailboxActor.remote()
        self._pump = threading.Thread(
            target=self._pump_loop, name="autoinfer-ray-reports", daemon=True
        )
        self._pump.start()
        super().start()

    def stop(self, grace_s: float = 30.0) -> None:
        super().stop(grace_s)
        self._pump_stop.set()
        if self._pump is not None:
            self._pump.join(10)
        self.pool.close()
        if self._mailbox is not None:
            with contextlib.suppress(RayError):  # gone with the cluster already
                ray.kill(self._mailbox)
            self._mailbox = None
        if self._owns_ray:
            ray.shutdown()
            self._owns_ray = False

    def stats(self) -> dict[str, int]:
        stats = super().stats()
        now = time.monotonic()
        if now - self._cluster[0] > 5 and ray.is_initialized():
            try:
                self._cluster = (now, dict(ray.cluster_resources()))
            except RayError as error:
                log.warning("ray: cannot read the cluster's resources: %s", one_line(str(error)))
        resources = self._cluster[1]
        stats["cluster_cpus"] = int(resources.get("CPU", 0))
        stats["cluster_gpus"] = int(resources.get("GPU", 0))
        return {**stats, **self.pool.stats()}

    def _connect(self) -> None:
        if ray.is_initialized():
            return
        options: dict[str, Any] = {"address": self.address, "namespace": "autoinfer"}
        if not (self.address or "").startswith("ray://"):
            options["logging_level"] = logging.WARNING
        try:
            ray.init(**options)
        except (ConnectionError, RuntimeError, ValueError) as error:
            where = self.address or "Ray's default address"
            raise ConfigError(
                f"executor.address {where}: cannot connect to Ray: {one_line(str(error))}"
            ) from None
        self._owns_ray = True
        log.info("ray: connected to %s", self.address or "the default cluster")

    # --- one job ------------------------------------------------------------------------

    def _admit(self, job: JobRecord) -> _RayJob:
        return _RayJob(job)

    def _started(self, item: _RayJob) -> bool:
        return item.started

    def _housekeeping(self) -> None:
        self.pool.reap_idle()

    def _execute(self, item: _RayJob) -> str:
        job = item.job
        spec = JobSpec.model_validate(job.spec)
        options = task_options(spec, job.id)
        node = self._node_context(spec)
        try:
            try:
                item.ref = run_on_node.options(**options).remote(
                    job, self.owner, node, self._mailbox
                )
            except (RayError, ValueError, TypeError) as refused:
                reason = f"cannot submit the job to Ray: {first_line(refused)}"
                self._log(job.id, f"failed: {reason}")
                self.jobs.fail_or_retry(job.id, reason, owner=self.owner, backoff_s=2.0)
                return "failed"
            self._log(job.id, placement_note(options))
            final, ended_by = self._wait(item)
            self._sync()
            return self._settle(item, final, ended_by)
        finally:
            if node.predictors is not None:
                self.pool.release(node.predictors)
            self._forget(job.id)

    def _node_context(self, spec: JobSpec) -> NodeContext:
        references = {v.value for v in spec.environment.env if v.value.startswith("secret:")}
        references |= {f"secret:{name}" for name in spec.environment.secrets}
        stores = dict(self.ctx.storage.store_configs)
        references |= {s.credentials for s in stores.values() if s.credentials}
        secrets, errors = {}, {}
        for reference in references:
            try:
                secrets[reference] = self.ctx.resolve_env(reference)
            except AutoInferError as error:
                errors[reference] = str(error)
        predictors = None
        if runs_in_predictor_pool(spec.model_dump(mode="json")):
            resources = spec.resources
            actors = self.pool.acquire(
                spec.model.source_uri,
                spec.model.labels_uri,
                gpu_count=resources.gpu_count,
                accelerator_type=ray_accelerator_type(resources.gpu_type)
                if resources.gpu_type
                else None,
            )
            # The task decodes its images with as many threads as it holds CPUs.
            predictors = dataclasses.replace(actors, decode_threads=resources.cpu_count)
        return NodeContext(
            stores=stores,
            base_dir=self.ctx.storage.base_dir,
            archive_limits=self.ctx.archive_limits,
            secrets=secrets,
            secret_errors=errors,
            predictors=predictors,
            service_url=self.ctx.service_url,
            gallery=self.ctx.gallery is not None,
            sandbox=self.ctx.sandbox.config,
            paths=self.ctx.paths,
        )

    def _wait(self, item: _RayJob) -> tuple[str | None, RayError | None]:
        """Wait for the task, passing a stop on to it; (its final status, or the error that
        ended it)."""
        signalled, kill_at = False, None
        while not ray.wait([item.ref], timeout=0.2)[0]:
            if item.lease_lost and kill_at is None:
                kill_at = 0.0
            if item.cancellation.is_set and not signalled:
                signalled = True
                kind, reason = item.cancellation.kind, item.cancellation.reason or "stopped"
                ray.get(self._mailbox.cancel.remote(item.job.id, kind, reason))
                self._sync()
                if not item.started:
                    ray.cancel(item.ref)  # still waiting for a node: it never runs
                kill_at = time.monotonic() + FORCE_AFTER_S
            if kill_at is not None and time.monotonic() >= kill_at:
                log.warning("job %s: its Ray task did not end; killing it", item.job.id)
                ray.cancel(item.ref, force=True)
                kill_at = float("inf")
        try:
            return ray.get(item.ref), None
        except TaskCancelledError:
            return None, None
        except RayError as error:
            return None, error

    def _settle(self, item: _RayJob, final: str | None, error: RayError | None) -> str:
        """End the attempt in the store where the task could not: a stop of a task that did not
        report its end, a hand-back, or a lost worker (a new attempt while attempts remain)."""
        job = self.jobs.get(item.job.id)
        if job.terminal:
            return job.status
        if item.lease_lost or job.attempt != item.job.attempt or job.status == Status.NEW:
            return "requeued"  # by its Runner's report, or by whoever holds it now
        if final == "new":
            return "new"
        cancellation = item.cancellation
        if cancellation.is_set:
            reason = cancellation.reason or "stopped"
            if cancellation.kind == "shutdown":
                self._log(job.id, f"handed back: {reason}")
                return "new"
            if cancellation.kind == "timeout":
                self._log(job.id, f"failed: {reason}")
                self.jobs.fail_or_retry(job.id, reason, owner=self.owner, backoff_s=2.0)
                return "failed"
            self._log(job.id, f"stopped: {reason}")
            self.jobs.transition(job.id, Status.STOPPED, reason=reason, owner=self.owner)
            return "stopped"
        if isinstance(error, RayTaskError):
            reason = f"internal error on the Ray node: {first_line(error.cause or error)}"
        elif error is not None:
            reason = f"attempt {job.attempt} lost its Ray worker ({type(error).__name__}: {first_line(error)})"
        else:
            reason = f"attempt {job.attempt} ended without a result ({final})"
        self._log(job.id, f"failed: {reason}")
        self.jobs.fail_or_retry(job.id, self.ctx.redact(reason), owner=self.owner, backoff_s=1.0)
        return "failed"

    def _forget(self, job_id: str) -> None:
        if self._mailbox is not None:
            self._mailbox.forget.remote(job_id)

    def _log(self, job_id: str, line: str) -> None:
        self.jobs.append_log(job_id, [(utcnow(), "system", self.ctx.redact(line))])

    # --- reports ------------------------------------------------------------------------

    def _pump_loop(self) -> None:
        """Apply the reports of the running tasks as they arrive, in order."""
        while not self._pump_stop.is_set():
            try:
                reports = ray.get(self._mailbox.drain.remote(PUMP_WAIT_S), timeout=60)
            except RayActorError as error:
                log.error(
                    "ray: the reports mailbox is lost (%s); starting a new one", first_line(error)
                )
                with self._applied:
                    self._mailbox, self._applied_sequence = MailboxActor.remote(), 0
                    self._applied.notify_all()
                continue
            except RayError as error:
                log.warning("ray: cannot read the job reports now: %s", first_line(error))
                self._pump_stop.wait(1.0)
                continue
            for sequence, *report in reports:
                try:
                    self._apply(*report)
                except Exception:  # a database hiccup loses this report, not the loop
                    log.exception("ray: applying a job report failed")
                with self._applied:
                    self._applied_sequence = sequence
                    self._applied.notify_all()

    def _sync(self, timeout_s: float = 60.0) -> None:
        """Wait until every report received so far is applied (a task that has returned has
        all its reports applied after this)."""
        mailbox = self._mailbox
        target = ray.get(mailbox.sequence.remote(), timeout=timeout_s)
        with self._applied:
            self._applied.wait_for(
                lambda: (
                    self._applied_sequence >= target
                    or self._mailbox is not mailbox  # lost, with what it held
                    or self._pump_stop.is_set()
                ),
                timeout_s,
            )

    def _apply(self, job_id: str, attempt: int, method: str, args: tuple, kwargs: dict) -> None:
        with self._lock:
            item = self._running.get(job_id)
        if item is None or item.job.attempt != attempt or item.lease_lost:
            log.debug("job %s: dropped a late report of attempt %d (%s)", job_id, attempt, method)
            return
        try:
            if method == "started":
                item.started = True
            elif method == "gallery":
                self._save_gallery(job_id, *args)
            elif method == "append_log":
                (lines,) = args
                self.jobs.append_log(
                    job_id, [(at, s, self.ctx.redact(line)) for at, s, line in lines]
                )
            elif method in REPORTS:
                if method == "fail_or_retry":
                    args = (self.ctx.redact(args[0]),)
                if kwargs.get("reason"):
                    kwargs = {**kwargs, "reason": self.ctx.redact(kwargs["reason"])}
                getattr(self.jobs, method)(job_id, *args, **kwargs)
            else:
                log.warning("job %s: unknown report %r from its task", job_id, method)
        except Conflict as error:
            log.warning("job %s: %s; ending its task", job_id, error)
            item.lease_lost = True
        except AutoInferError as error:
            log.warning("job %s: report %s not applied: %s", job_id, method, error)

    def _save_gallery(self, job_id: str, files: dict[str, bytes]) -> None:
        gallery = self.ctx.gallery
        if gallery is None:
            return
        folder = gallery.folder(job_id)
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for name, content in files.items():
            (folder / Path(name).name).write_bytes(content)
