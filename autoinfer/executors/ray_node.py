"""What runs on a cluster node for the Ray executor (`executors.ray`): a job's task and the
mailbox its reports travel through.

A job's task rebuilds what its Runner needs without the service (`NodeContext`: the stores,
the job's secrets, the model actors), runs the Runner, and sends every status change, progress
figure and log line to the service through the `Mailbox` actor (`ReportingJobs`, the JobService
methods a Runner calls), from which it also hears of a stop. `task_options` turns a job spec's
resources into the task's Ray options (`executors.ray_placement`, re-exported here).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from autoinfer.config import StoreConfig
from autoinfer.errors import ConfigError

try:
    import ray
    from ray.exceptions import RayError
except ImportError:  # an optional extra
    raise ConfigError(
        "executor.type ray: Ray is not installed here; pip install 'autoinfer[ray]'"
    ) from None

from autoinfer.executors.ray_placement import (  # noqa: F401 - re-exported
    ray_accelerator_type,
    requested_resources,
    task_options,
)
from autoinfer.gallery import Gallery, Thumbnails
from autoinfer.jobs.items import ItemBatch
from autoinfer.jobs.records import JobRecord
from autoinfer.jobs.service import JobResult
from autoinfer.jobs.spec import Status
from autoinfer.predictors.ray_pool import ModelActors
from autoinfer.runner import Cancellation, Runner, RunnerContext, one_line
from autoinfer.sandbox import PathPolicy, SandboxConfig, make_sandbox
from autoinfer.storage import StorageRegistry
from autoinfer.storage.archives import ArchiveLimits

log = logging.getLogger("autoinfer.executor.ray")

LOG_DELAY_S = 0.2  # how long a task's log lines and progress may wait to be sent together
LISTEN_S = 5.0  # a task's long poll for its job's stop (it arrives at once)


# --- the mailbox and the task ---------------------------------------------------------------


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


MailboxActor: Any = ray.remote(Mailbox).options(num_cpus=0, max_concurrency=10_000)


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
                    log.warning("job %s: reports lost: %s", self._job_id, first_line(error))
            if closing:
                with self._changed:
                    if not self._calls:
                        return

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
        passed: Sequence[tuple[Status, datetime]] = (),
        items: ItemBatch | None = None,  # none here: a node's RunnerContext has no item sink
    ) -> None:
        # What goes with the move travels as the calls the service applies, in this order.
        self.append_log(job_id, list(log_lines))
        for earlier, _at in passed:
            self.send("transition", Status(earlier), reason=None, owner=owner)
        if progress is not None:
            self.later("set_progress", *progress)
        if result is not None:
            self.later(
                "set_result", output_location=result.output_location, model_info=result.model_info
            )
        self.send("transition", Status(status), reason=reason, owner=owner)

    def fail_or_retry(
        self, job_id: str, reason: str, *, owner: str, backoff_s: float, retry: bool = True
    ) -> None:
        self.send("fail_or_retry", reason, owner=owner, backoff_s=backoff_s, retry=retry)

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
    # The service's sandbox settings and confined paths (autoinfer.sandbox), applied here too.
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    paths: PathPolicy | None = None

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
            jobs=reporter,
            storage=storage,
            scratch_root=scratch,
            predictors=self.predictors,
            archive_limits=self.archive_limits,
            resolve_env=self.resolve,
            redact=Redactor(self.secrets.values()),
            service_url=self.service_url,
            gallery=_ShippingGallery(reporter) if self.gallery else None,
            sandbox=make_sandbox(self.sandbox),
            paths=self.paths,
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


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return one_line(text.splitlines()[0] if text else type(error).__name__, 300)
