"""One job's life, wherever it runs: stage in → run → stage out, with its log and status.

The runner owns a scratch folder per attempt (`<scratch>/<job id>-<attempt>/` holding `data/`,
`output/` and, unless the job runs in the predictor pool, `model/`), removes it when done and
turns every failure into one line of reason. This module walks the states; `staging` moves
the bytes, `commands` runs worker commands.
"""

from __future__ import annotations

import shutil
import threading
import time
from datetime import datetime
from typing import TYPE_CHECKING

from autoinfer.db import utcnow
from autoinfer.errors import (
    ArchiveError,
    AutoInferError,
    InputRejected,
    JobFailed,
    JobStopped,
)
from autoinfer.gallery import Thumbnails
from autoinfer.item_results import AttemptItems
from autoinfer.jobs.records import JobRecord
from autoinfer.jobs.service import JobResult
from autoinfer.jobs.spec import JobSpec, Status
from autoinfer.resume import checkpoint_folder, classify_resuming, discard
from autoinfer.runner import commands, staging
from autoinfer.runner.context import (
    Cancellation,
    JobReporter,
    RunnerContext,
    runs_in_predictor_pool,
)
from autoinfer.runner.log import JobLog
from autoinfer.sandbox import SandboxUnavailable
from autoinfer.text import one_line

if TYPE_CHECKING:
    from autoinfer.environments import JobEnvironment
    from autoinfer.executors.gpus import GpuGrant

PROGRESS_EVERY_S = 0.25  # a running job's images done/total is stored at most this often


class Runner:
    """Runs one claimed attempt of one job to a terminal status (or hands it back)."""

    def __init__(
        self, ctx: RunnerContext, job: JobRecord, owner: str, cancellation: Cancellation
    ) -> None:
        self.ctx = ctx
        self.job = job
        self.spec = JobSpec.model_validate(job.spec)
        self.owner = owner
        self.cancellation = cancellation
        self.reporter: JobReporter = ctx.jobs  # all the runner tells the job service
        self.log = JobLog(self.reporter, job.id, ctx.redact)
        self.items = AttemptItems(ctx.items, job.id, self.log.system)
        self.workdir = ctx.scratch_root / f"{job.id}-{job.attempt}"
        self.data_dir = self.workdir / "data"
        self.model_dir = self.workdir / "model"
        self.output_dir = self.workdir / "output"
        self.deadline = time.monotonic() + self.spec.timeout_s
        self._timer: threading.Timer | None = None
        self._last_stderr = ""  # the last non-blank stderr line, quoted in a failure reason
        self._progress: tuple[int, int] | None = None  # stored with the next status change
        # Statuses entered for a brief local step (`_move(brief=True)`), with their times:
        # committed with the next status change, in its transaction.
        self._passed: list[tuple[Status, datetime]] = []
        # The GPUs the executor gave this job (None: it does no GPU accounting); the job's
        # environment and sandbox (`GpuGrant.device_paths`) show it only these.
        self.gpus: GpuGrant | None = None
        # Where a built-in model job's images run ("cpu" or "cuda", from its gpu_count: see
        # `predictors.devices.job_device`); None: the pool's `predictors.device`.
        self.device: str | None = None
        # The job's Python environment, once prepared (autoinfer.environments).
        self.environment: JobEnvironment | None = None

    # --- the life of a job --------------------------------------------------------------

    def run(self) -> str:
        """Run the attempt; returns the final status ('finished', 'failed', 'stopped', 'new')."""
        self._timer = threading.Timer(self.spec.timeout_s, self._on_timeout)
        self._timer.daemon = True
        self._timer.start()
        try:
            self.log.system(f"attempt {self.job.attempt} started on {self.owner}")
            self._check_sandbox()
            self._move(Status.WAITING_DOWNLOAD, brief=self._local_stage_in())
            self._prepare_folders()
            self._stage_in()
            self._prepare_environment()
            self._check_cancelled()
            self._move(Status.RUNNING)
            model_info = self._run_model()
            self._check_cancelled()
            self._move(Status.UPLOADING, brief=self._local_stage_out())
            location = self._stage_out()
            self.log.system(f"results uploaded to {location}", soon=True)  # the end follows
            return self._end(Status.FINISHED, None, JobResult(location, model_info))
        except JobStopped:
            return self._end_cancelled()
        except (ArchiveError, InputRejected, SandboxUnavailable) as error:
            if self.cancellation.is_set:
                return self._end_cancelled()
            # A corrupt, hostile or oversized input stays what it is, and so does a missing
            # sandbox: another attempt would only repeat the failure.
            return self._end(Status.FAILED, one_line(str(error)), retry=False)
        except AutoInferError as error:
            if self.cancellation.is_set:
                return self._end_cancelled()
            return self._end(Status.FAILED, one_line(str(error)))
        except Exception as error:  # noqa: BLE001 - a bug must fail the job, not the executor
            if self.cancellation.is_set:
                return self._end_cancelled()
            return self._end(
                Status.FAILED, one_line(f"internal error: {type(error).__name__}: {error}")
            )
        finally:
            if self._timer:
                self._timer.cancel()
            if self.environment is not None and self.ctx.environments is not None:
                self.ctx.environments.release(self.environment)
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _end_cancelled(self) -> str:
        kind, reason = self.cancellation.kind, self.cancellation.reason or "stopped"
        if kind == "timeout":
            return self._end(Status.FAILED, reason)
        if kind == "shutdown":
            self.log.system(f"handed back: {reason}")
            self._commit_passed()
            self.log.flush()
            return "new"  # the executor releases the job for the next start
        return self._end(Status.STOPPED, reason)

    def _end(
        self,
        status: Status,
        reason: str | None,
        result: JobResult | None = None,
        *,
        retry: bool = True,
    ) -> str:
        reason = self.ctx.redact(reason) if reason else reason  # stderr may quote a secret
        # Stored with the end (or the flush before a retry) that follows at once.
        if reason:
            self.log.system(f"{status.value}: {reason}", soon=True)
        else:
            self.log.system(f"{status.value}", soon=True)
        if status == Status.FAILED:
            if not runs_in_predictor_pool(self.job.spec):  # its items share the job's outcome
                self.items.fail_worker(self.data_dir, reason or "failed")
            else:  # what it classified before failing (and no earlier attempt's items)
                self.items.settle()
            if not retry:  # before the flush, so that it is stored with the rest
                self.log.system("not retried: a new attempt would meet the same input")
            self._commit_passed()
            self.log.flush()
            if self._progress is not None:
                self.reporter.set_progress(self.job.id, *self._progress)
            record = self.reporter.fail_or_retry(
                self.job.id, reason or "failed", owner=self.owner, backoff_s=2.0, retry=retry
            )
            # None: a Ray node's reporter, whose outcome the service decides (kept: resumable).
            ended = record is not None and record.status == Status.FAILED.value
        else:
            self._commit_move(status, reason=reason, result=result)
            ended = True
        if ended and runs_in_predictor_pool(self.job.spec):
            discard(self.ctx.scratch_root, self.job.id)  # no attempt will resume it now
        return status.value

    def _move(self, status: Status, *, brief: bool = False) -> None:
        """Enter `status`, committed now; `brief`: a step of milliseconds (local files), whose
        status is committed with the next one, at its own time (one transaction for both)."""
        self._check_cancelled()
        if brief:
            self._passed.append((status, utcnow()))
        else:
            self._commit_move(status)
        self.log.system(f"status: {status.value}", soon=brief)

    def _commit_passed(self) -> None:
        """Commit the brief statuses not committed yet (before a failure or a hand-back)."""
        if self._passed:
            *earlier, (last, _at) = self._passed
            self.reporter.transition(self.job.id, last, owner=self.owner, passed=earlier)
            self._passed = []

    def _local_stage_in(self) -> bool:
        """A pool job whose input is a local file (extracted where it lies): stage-in is brief."""
        uri = self.spec.data.input_uri
        try:
            storage = self.ctx.storage.for_uri(uri)
            return runs_in_predictor_pool(self.job.spec) and storage.local_path(uri) is not None
        except AutoInferError:  # stage-in says why
            return False

    def _local_stage_out(self) -> bool:
        """A pool job whose output goes to local files: the upload is brief."""
        try:
            storage = self.ctx.storage.for_uri(self.spec.data.output_uri)
        except AutoInferError:  # stage-out says why
            return False
        return runs_in_predictor_pool(self.job.spec) and storage.local

    def _commit_move(
        self, status: Status, *, reason: str | None = None, result: JobResult | None = None
    ) -> None:
        """The status change, committed with what waits to be stored: the log lines written
        since the last write, the final images done/total, the item results, the result."""
        progress, self._progress = self._progress, None
        passed, items = self._passed, self.items.pending()

        def write(lines: list[tuple[datetime, str, str]]) -> None:
            self.reporter.transition(
                self.job.id,
                status,
                reason=reason,
                owner=self.owner,
                progress=progress,
                result=result,
                log_lines=lines,
                passed=passed,
                items=items,
            )

        self.log.flush_with(write)
        self._passed = []
        self.items.stored(items)

    def _on_timeout(self) -> None:
        self.cancellation.cancel("timeout", f"timed out after {self.spec.timeout_s} s (timeout_s)")

    def _check_cancelled(self) -> None:
        if self.cancellation.is_set:
            raise JobStopped(self.cancellation.reason or "stopped")

    def _prepare_folders(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)
        self.workdir.mkdir(parents=True)
        folders = [self.data_dir, self.output_dir]
        if not runs_in_predictor_pool(self.job.spec):  # a pool job has no model to fetch or run
            folders.append(self.model_dir)
        for folder in folders:
            folder.mkdir()

    def _prepare_environment(self) -> None:
        """The worker commands' Python environment: the model's requirements, built or reused."""
        if self.ctx.environments is not None and not runs_in_predictor_pool(self.job.spec):
            self.environment = self.ctx.environments.prepare(
                self.model_dir, self.spec.environment, self.log, self.cancellation.event
            )

    # --- run ----------------------------------------------------------------------------

    def _run_model(self) -> dict | None:
        if runs_in_predictor_pool(self.job.spec):
            return self._run_builtin()
        for command in self.spec.workers:
            self._run_command(command)
        self.items.finish_worker(self.data_dir, self.output_dir)
        return {
            "source_type": self.spec.model.source_type,
            "source_uri": self.spec.model.source_uri,
        }

    def _run_builtin(self) -> dict:
        if self.ctx.predictors is None:
            raise JobFailed("built-in models are not available in this executor")
        self.items.start()
        # When progress was last stored; the clock starts with the first results (time spent
        # queued behind other jobs is no reason to store a count that the end follows soon).
        stored: list[float] = []

        def progress(done: int, total: int) -> None:
            # The final count goes with the next status change (a short job: its only write).
            self._progress = (done, total)
            now = time.monotonic()
            if not stored:
                stored.append(now)
            elif done < total and now - stored[0] >= PROGRESS_EVERY_S:
                self.reporter.set_progress(self.job.id, done, total)
                stored[0] = now

        gallery = self.ctx.gallery
        # The gallery's thumbnails, made from the images as the pool decodes them (if it can).
        thumbnails = None
        if gallery is not None and getattr(self.ctx.predictors, "makes_thumbnails", False):
            thumbnails = Thumbnails()
        manifest = classify_resuming(  # predictions kept batch by batch, for a next attempt
            self.ctx.predictors.classify,
            checkpoint_folder(self.ctx.scratch_root, self.job.id),
            self.spec.model.source_uri,
            self.data_dir,
            self.output_dir,
            workdir=self.workdir,
            log=self.log.system,
            labels_uri=self.spec.model.labels_uri,
            progress=progress,
            cancelled=self.cancellation.event,
            on_items=self.items.add_predictions,
            **({"thumbnails": thumbnails} if thumbnails is not None else {}),
            **({"device": self.device} if self.device is not None else {}),
        )
        # errors.json if any failed; the last results go with the next status change.
        self.items.finish(self.output_dir, store=False)
        images, errors = manifest.get("images", 0), manifest.get("errors", 0)
        # Stored with the status change that follows (the gallery is saved in between).
        self.log.system(f"classified {images} image(s), {errors} could not be decoded", soon=True)
        if gallery is not None and thumbnails is not None:
            gallery.save(self.job.id, self.data_dir, self.output_dir, thumbnails)
        elif gallery is not None:
            gallery.save(self.job.id, self.data_dir, self.output_dir)
        return manifest.get("model", manifest)

    def job_environment(self) -> dict[str, str]:
        """The process environment of a worker command (DESIGN.md's job environment)."""
        return commands.job_environment(self)

    def _run_command(self, command: str) -> None:
        commands.run_command(self, command)

    def _check_sandbox(self) -> None:
        """Fail at once, before any download, when worker commands cannot run here."""
        commands.check_sandbox(self)

    def _remaining(self) -> float:
        return max(1.0, self.deadline - time.monotonic())

    # --- stage in and out (autoinfer.runner.staging) ------------------------------------

    def _stage_in(self) -> None:
        staging.stage_in(self)

    def _stage_out(self) -> str:
        return staging.stage_out(self)
