"""The Ray executor: the same jobs, each run as a Ray task on a node of a cluster.

    service (this process)                                  a cluster node
    claims with leases, renews them  ── Ray task ──►   Runner: stage in → run → stage out
    applies the reports to the store ◄── mailbox ───   reports status, progress, log lines
    (the only process with the database)               (ReportingJobs), polls for a stop

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

import asyncio
import contextlib
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from autoinfer.config import ExecutorConfig, PredictorsConfig, StoreConfig
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
from autoinfer.gallery import Gallery, Thumbnails
from autoinfer.jobs.records import JobRecord
from autoinfer.jobs.service import JobService
from autoinfer.jobs.spec import JobSpec, Status
from autoinfer.predictors.ray_pool import ModelActors, RayPredictorPool
from autoinfer.runner import (
    KILL_GRACE_S,
    Cancellation,
    Runner,
    RunnerContext,
    one_line,
    runs_in_predictor_pool,
)
from autoinfer.storage import StorageRegistry
from autoinfer.storage.archives import ArchiveLimits

log = logging.getLogger("autoinfer.executor.ray")

PUMP_WAIT_S = 0.5  # the service's long poll for reports (they are applied as they arrive)
LOG_DELAY_S = 0.2  # how long a task's log lines and progress may wait to be sent together
LISTEN_S = 5.0  # a task's long poll for its job's stop (it arrives at once)
FORCE_AFTER_S = KILL_GRACE_S + 10  # a cancelled task still running then is killed
REPORTS = frozenset({"transition", "fail_or_retry", "set_progress", "set_result", "append_log"})


def ray_accelerator_type(gpu_type: str) -> str:
    """A job's `gpu_type` in Ray's spelling of accelerator types (`ray.util.accelerators`):
    `t4` → `T4`, `a100` → `A100`, `rtx3090` → `GeForce-RTX-3090`, `rtxa6000` → `RTX-A6000`;
    a name already in Ray's spelling is kept."""
    name = gpu_type.strip()
    key = re.sub(r"[\s_-]", "", name.lower())
    if match := re.fullmatch(r"rtx(a\d{4})", key):
        return f"RTX-{match[1].upper()}"
    if match := re.fullmatch(r"rtx(\d{4})(ti)?", key):
        return f"GeForce-RTX-{match[1]}" + ("-Ti" if match[2] else "")
    if re.fullmatch(r"[a-z]\d+[a-z]*", key):
        return key.upper()
    return name


def task_options(spec: JobSpec, job_id: str) -> dict[str, Any]:
    """The Ray options of a job's task: its resources, and no retries by Ray itself (a lost
    attempt is retried through the job's own attempts). A built-in model job's GPU is its
    model actors' (`predictors.ray_pool`), so its task asks for CPUs only."""
    resources = spec.resources
    options: dict[str, Any] = {
        "num_cpus": resources.cpu_count,
        "num_gpus": 0,
        "max_retries": 0,
        "retry_exceptions": False,
        "name": f"autoinfer job {spec.name} ({job_id[:8]})",
    }
    if resources.gpu_count and not runs_in_predictor_pool(spec.model_dump(mode="json")):
        options["num_gpus"] = resources.gpu_count
        if resources.gpu_type:
            options["accelerator_type"] = ray_accelerator_type(resources.gpu_type)
    return options


def requested_resources(options: dict[str, Any]) -> dict[str, float]:
    """The Ray resources `options` ask for, as Ray names them."""
    wanted = {"CPU": float(options["num_cpus"])}
    if options.get("num_gpus"):
        wanted["GPU"] = float(options["num_gpus"])
    if options.get("accelerator_type"):
        wanted[f"accelerator_type:{options['accelerator_type']}"] = 0.001
    return wanted


# --- the task's side ------------------------------------------------------------------------


Report = tuple[int, str, int, str, tuple, dict]  # (sequence, job id, attempt, method, args, kwargs)


class Mailbox:
    """Reports of running tasks on their way to the service, and stops on their way back.
    Owned by the service, which long-polls it (`drain`); tasks call `report` synchronously, so
    a task's reports are all here, numbered in order, when it returns."""

    def __init__(self) -> None:
        self._reports: list[Report] = []
        self._sequence = 0
        self._cancels: dict[str, tuple[str, str]] = {}
        self._stops: dict[str, asyncio.Event] = {}  # a task waiting for its job's stop
        self._arrived: asyncio.Event | None = None

    def _event(self) -> asyncio.Event:
        if self._arrived is None:
            self._arrived = asyncio.Event()
        return self._arrived

    async def report(self, job_id: str, attempt: int, calls: list[tuple[str, tuple, dict]]) -> None:
        """Queue a job's calls (method, args, kwargs), in order."""
        for method, args, kwargs in calls:
            self._sequence += 1
            self._reports.append((self._sequence, job_id, attempt, method, args, kwargs))
        self._event().set()

    async def drain(self, wait_s: float) -> list[Report]:
        """The reports received since the last drain, waiting up to `wait_s` for one."""
        if not self._reports and wait_s > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event().wait(), wait_s)
        self._event().clear()
        reports, self._reports = self._reports, []
        return reports

    async def sequence(self) -> int:
        """The number of the last report received."""
        return self._sequence

    async def cancel(self, job_id: str, kind: str, reason: str) -> None:
        self._cancels.setdefault(job_id, (kind, reason))
        if job_id in self._stops:
            self._stops[job_id].set()

    async def cancelled(self, job_id: str, wait_s: float = 0.0) -> tuple[str, str] | None:
        """(kind, reason) of the job's stop, waiting up to `wait_s` for one; None if none."""
        if job_id not in self._cancels and wait_s > 0:
            stop = self._stops.setdefault(job_id, asyncio.Event())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait_s)
        return self._cancels.get(job_id)

    async def forget(self, job_id: str) -> None:
        self._cancels.pop(job_id, None)
        stop = self._stops.pop(job_id, None)
        if stop is not None:
            stop.set()  # a task still waiting goes


MailboxActor: Any = ray.remote(num_cpus=0, max_concurrency=10_000)(Mailbox)


class ReportingJobs:
    """The `JobService` methods a Runner calls, forwarded to the service through its mailbox:
    a Runner on a node needs no database. A sender thread sends the calls in order, so the
    Runner never waits for the service: a status change goes at once (with whatever waits
    before it), log lines and progress within `LOG_DELAY_S`. `close()` sends the rest."""

    def __init__(self, mailbox: Any, job: JobRecord) -> None:
        self._mailbox = mailbox
        self._job_id, self._attempt = job.id, job.attempt
        self._calls: list[tuple[str, tuple, dict]] = []
        self._changed = threading.Condition()
        self._urgent = self._closing = False
        self._sender = threading.Thread(
            target=self._send_loop, name="autoinfer-reports", daemon=True
        )
        self._sender.start()

    def send(self, method: str, *args: Any, **kwargs: Any) -> None:
        """Send this call, and every call waiting before it, now."""
        with self._changed:
            self._calls.append((method, args, kwargs))
            self._urgent = True
            self._changed.notify()

    def later(self, method: str, *args: Any, **kwargs: Any) -> None:
        """Send this call with the next urgent one, or within `LOG_DELAY_S`."""
        with self._changed:
            self._calls.append((method, args, kwargs))

    def close(self, timeout_s: float = 60.0) -> None:
        """Send every call made so far and stop the sender (the task is about to return)."""
        with self._changed:
            self._closing = True
            self._changed.notify()
        self._sender.join(timeout_s)

    def _send_loop(self) -> None:
        while True:
            with self._changed:
                if not (self._urgent or self._closing):
                    self._changed.wait(LOG_DELAY_S)
                calls, self._calls, self._urgent = self._calls, [], False
                closing = self._closing
            if calls:
                try:
                    ray.get(self._mailbox.report.remote(self._job_id, self._attempt, calls))
                except RayError as error:  # the service is gone: its leases will expire
                    log.warning("job %s: reports lost: %s", self._job_id, _first_line(error))
            if closing:
                with self._changed:
                    if not self._calls:
                        return

    def transition(
        self, job_id: str, status: Status, *, reason: str | None = None, owner: str | None = None
    ) -> None:
        self.send("transition", Status(status), reason=reason, owner=owner)

    def fail_or_retry(self, job_id: str, reason: str, *, owner: str, backoff_s: float) -> None:
        self.send("fail_or_retry", reason, owner=owner, backoff_s=backoff_s)

    def set_progress(self, job_id: str, done: int, total: int) -> None:
        self.later("set_progress", done, total)

    def set_result(
        self, job_id: str, *, output_location: str | None, model_info: dict[str, Any] | None
    ) -> None:
        self.send("set_result", output_location=output_location, model_info=model_info)

    def append_log(self, job_id: str, lines: list[tuple[datetime, str, str]]) -> None:
        lines = list(lines)
        if lines:
            self.later("append_log", lines)

    def stop_requested(self, job_id: str) -> bool:
        return ray.get(self._mailbox.cancelled.remote(job_id)) is not None


class _ShippingGallery(Gallery):
    """Makes a job's thumbnails on the node and sends them to the service's gallery (a few
    KB each; the images themselves stay on the node)."""

    def __init__(self, reporter: ReportingJobs) -> None:
        super().__init__(Path(tempfile.gettempdir()))
        self.reporter = reporter

    def save(
        self, job_id: str, data_dir: Path, output_dir: Path, thumbnails: Thumbnails | None = None
    ) -> int:
        self.root = Path(tempfile.mkdtemp(prefix="autoinfer-gallery-"))
        try:
            count = super().save(job_id, data_dir, output_dir, thumbnails)
            folder = self.folder(job_id)
            files = {path.name: path.read_bytes() for path in folder.iterdir() if path.is_file()}
            self.reporter.send("gallery", files)
            return count
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class NodeContext:
    """What a node needs to build a job's RunnerContext without the service: the store
    settings, the secrets the job uses (resolved by the service), the model actors."""

    stores: dict[str, StoreConfig]
    base_dir: Path
    archive_limits: ArchiveLimits
    secrets: dict[str, str] = field(default_factory=dict)  # "secret:NAME" → value
    secret_errors: dict[str, str] = field(default_factory=dict)  # "secret:NAME" → why not
    predictors: ModelActors | None = None
    service_url: str | None = None
    gallery: bool = False
    scratch_root: str | None = None  # None: <node temp>/autoinfer/scratch

    def resolve(self, value: str) -> str:
        if not value.startswith("secret:"):
            return value
        if value in self.secrets:
            return self.secrets[value]
        raise ConfigError(self.secret_errors.get(value, f"{value}: not resolved for this job"))

    def runner_context(self, reporter: ReportingJobs) -> RunnerContext:
        from autoinfer.secrets import Redactor
        from autoinfer.storage.s3 import make_s3_factory

        storage = StorageRegistry(self.stores, base_dir=self.base_dir)
        storage.register("s3", make_s3_factory(self.stores, self.resolve))
        scratch = Path(self.scratch_root or Path(tempfile.gettempdir()) / "autoinfer" / "scratch")
        scratch.mkdir(parents=True, exist_ok=True)
        return RunnerContext(
            jobs=cast(JobService, reporter),
            storage=storage,
            scratch_root=scratch,
            predictors=self.predictors,
            archive_limits=self.archive_limits,
            resolve_env=self.resolve,
            redact=Redactor(self.secrets.values()),
            service_url=self.service_url,
            gallery=_ShippingGallery(reporter) if self.gallery else None,
        )


@ray.remote(max_retries=0)
def run_on_node(job: JobRecord, owner: str, node: NodeContext, mailbox: Any) -> str:
    """A job's attempt on the node Ray chose: the Runner, reporting through the mailbox."""
    reporter = ReportingJobs(mailbox, job)
    reporter.send("started")
    cancellation = Cancellation()
    ctx = node.runner_context(reporter)
    for stale in ctx.scratch_root.glob(f"{job.id}-*"):  # earlier attempts that died here
        if stale.name != f"{job.id}-{job.attempt}":
            shutil.rmtree(stale, ignore_errors=True)
    runner = Runner(ctx, job, owner, cancellation)
    done = threading.Event()

    def listen() -> None:
        while not done.is_set():
            try:
                stop = ray.get(mailbox.cancelled.remote(job.id, LISTEN_S))
            except RayError as error:  # the service is gone: its leases will expire
                cancellation.cancel("shutdown", f"lost the service: {type(error).__name__}")
                return
            if stop is not None:
                cancellation.cancel(*stop)

    stop = ray.get(mailbox.cancelled.remote(job.id))
    if stop is not None:
        cancellation.cancel(*stop)
    listener = threading.Thread(target=listen, name="autoinfer-stop-listener", daemon=True)
    listener.start()
    try:
        context = ray.get_runtime_context()
        resources = {k: round(v, 3) for k, v in sorted(context.get_assigned_resources().items())}
        runner.log.system(
            f"ray: node {ray.util.get_node_ip_address()} ({context.get_node_id()[:12]}), "
            f"worker pid {os.getpid()}, resources {json.dumps(resources)}"
        )
        if cancellation.is_set:
            return runner._end_cancelled()
        return runner.run()
    finally:
        done.set()
        reporter.close()


# --- the service's side ---------------------------------------------------------------------


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
    `workers` actors per model, `batch_size`, `max_wait_ms`, ...); `cache_dir` is where the
    actors keep exported models (None, or a folder a node cannot create: the node's
    `~/.cache/autoinfer`)."""

    def __init__(
        self,
        ctx: RunnerContext,
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
            ctx, max_jobs=settings.max_jobs, lease_s=settings.lease_s, poll_s=poll_s, owner=owner
        )
        self.address = settings.address
        tuning = predictors or PredictorsConfig()
        self.pool = pool or RayPredictorPool(
            cache_dir=cache_dir,
            actors=tuning.worker_count,
            batch_size=tuning.batch_size,
            max_wait_ms=tuning.max_wait_ms,
            threads=tuning.threads_per_worker,
            decode_threads=tuning.decode_threads,
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
                reason = f"cannot submit the job to Ray: {_first_line(refused)}"
                self._log(job.id, f"failed: {reason}")
                self.jobs.fail_or_retry(job.id, reason, owner=self.owner, backoff_s=2.0)
                return "failed"
            self._log(job.id, self._placement_note(options))
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
            predictors = self.pool.acquire(
                spec.model.source_uri,
                spec.model.labels_uri,
                gpu_count=resources.gpu_count,
                accelerator_type=ray_accelerator_type(resources.gpu_type)
                if resources.gpu_type
                else None,
            )
        return NodeContext(
            stores=stores,
            base_dir=self.ctx.storage.base_dir,
            archive_limits=self.ctx.archive_limits,
            secrets=secrets,
            secret_errors=errors,
            predictors=predictors,
            service_url=self.ctx.service_url,
            gallery=self.ctx.gallery is not None,
        )

    def _placement_note(self, options: dict[str, Any]) -> str:
        wanted = requested_resources(options)
        note = f"ray: submitted as task '{options['name']}', requesting {json.dumps(wanted)}"
        try:
            totals = ray.cluster_resources()
        except RayError:
            return note
        missing = [name for name, amount in wanted.items() if totals.get(name, 0) < amount]
        if missing:
            note += f"; no node of the cluster has {', '.join(missing)} now: the job waits for one"
        return note

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
            reason = f"internal error on the Ray node: {_first_line(error.cause or error)}"
        elif error is not None:
            reason = f"attempt {job.attempt} lost its Ray worker ({type(error).__name__}: {_first_line(error)})"
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
                    "ray: the reports mailbox is lost (%s); starting a new one", _first_line(error)
                )
                with self._applied:
                    self._mailbox, self._applied_sequence = MailboxActor.remote(), 0
                    self._applied.notify_all()
                continue
            except RayError as error:
                log.warning("ray: cannot read the job reports now: %s", _first_line(error))
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


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return one_line(text.splitlines()[0] if text else type(error).__name__, 300)
