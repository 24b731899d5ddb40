"""One job's life, wherever it runs: stage in → run → stage out, with its log and status.

The runner owns a scratch folder per attempt (`<scratch>/<job id>-<attempt>/` holding `data/`,
`output/` and, unless the job runs in the predictor pool, `model/`), removes it when done and
turns every failure into one line of reason.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from autoinfer.db import utcnow
from autoinfer.errors import (
    ArchiveError,
    AutoInferError,
    InputRejected,
    JobFailed,
    JobStopped,
    StorageError,
)
from autoinfer.gallery import Gallery, Thumbnails
from autoinfer.item_results import AttemptItems, ItemSink
from autoinfer.jobs.records import JobRecord
from autoinfer.log_lines import cap_line, read_lines
from autoinfer.jobs.service import JobResult, JobService
from autoinfer.jobs.spec import JobSpec, Status, safe_file_name
from autoinfer.resume import checkpoint_folder, classify_resuming, discard
from autoinfer.retrying import retry_transient
from autoinfer.text import one_line
from autoinfer.sandbox import (
    BaseInterpreter,
    PathPolicy,
    PythonEnvironment,
    Sandbox,
    SandboxConfig,
    SandboxUnavailable,
    WorkerRun,
    inherited,
    make_sandbox,
)
from autoinfer.storage import StorageRegistry, join_uri
from autoinfer.storage.archives import ArchiveLimits, archive_kind, extract, make_zip
from autoinfer.storage.budget import ByteBudget
from autoinfer.storage.in_place import extract_in_place

if TYPE_CHECKING:
    from autoinfer.environments import EnvironmentManager, JobEnvironment
    from autoinfer.executors.gpus import GpuGrant

GIB = 1024**3
T = TypeVar("T")
KILL_GRACE_S = 5.0
PROGRESS_EVERY_S = 0.25  # a running job's images done/total is stored at most this often
LOG_FLUSH_S = 0.5  # buffered log lines reach the store at least this often


class Predictors(Protocol):
    """What the runner needs from the warm predictor pool."""

    def classify(
        self,
        model_source: str,
        data_dir: Path,
        output_dir: Path,
        *,
        labels_uri: str | None = None,
        progress: Callable[[int, int], None] | None = None,
        cancelled: threading.Event | None = None,
        on_items: Callable[[list[dict[str, Any]]], None] | None = None,
    ) -> dict: ...

    # A pool whose `makes_thumbnails` is true also takes `thumbnails=` (gallery.Thumbnails).


@dataclass
class Cancellation:
    """Why a running job must end early: a stop request, its timeout, or service shutdown."""

    event: threading.Event = field(default_factory=threading.Event)
    reason: str | None = None
    kind: str = "stop"  # "stop" | "timeout" | "shutdown"

    def cancel(self, kind: str, reason: str) -> None:
        if not self.event.is_set():
            self.kind, self.reason = kind, reason
            self.event.set()

    @property
    def is_set(self) -> bool:
        return self.event.is_set()


class JobLog:
    """Buffers a job's log lines and writes them to the store in small batches: at 50 lines,
    or when a line comes LOG_FLUSH_S after the last write, or at `flush_if_due`, or with the
    job's next status change (`flush_with`)."""

    def __init__(self, jobs: JobService, job_id: str, redact: Callable[[str], str] = str) -> None:
        self._jobs, self._job_id, self._redact = jobs, job_id, redact
        self._buffer: list[tuple[datetime, str, str]] = []
        self._lock = threading.Lock()
        self._flushing = threading.Lock()  # one flush at a time, so lines stay in order
        self._last_flush = time.monotonic()

    def write(self, stream: str, line: str) -> None:
        with self._lock:
            text = cap_line(self._redact(line.rstrip("\r\n")))  # one row stays bounded
            self._buffer.append((utcnow(), stream, text))
            due = len(self._buffer) >= 50 or time.monotonic() - self._last_flush > LOG_FLUSH_S
        if due:
            self.flush()

    def system(self, message: str) -> None:
        self.write("system", message)

    def flush_if_due(self) -> None:
        """Write lines that have waited LOG_FLUSH_S (a process that went quiet after them)."""
        with self._lock:
            due = bool(self._buffer) and time.monotonic() - self._last_flush > LOG_FLUSH_S
        if due:
            self.flush()

    def flush(self) -> None:
        self.flush_with(lambda lines: self._jobs.append_log(self._job_id, lines))

    def flush_with(self, write: Callable[[list[tuple[datetime, str, str]]], None]) -> None:
        """Hand the buffered lines to `write` (which stores them, possibly along with other
        writes); if it raises, the lines stay buffered, ahead of newer ones."""
        with self._flushing:
            with self._lock:
                lines, self._buffer = self._buffer, []
                self._last_flush = time.monotonic()
            try:
                write(lines)
            except BaseException:
                with self._lock:
                    self._buffer[:0] = lines
                raise


@dataclass
class RunnerContext:
    """What every runner of a service shares."""

    jobs: JobService
    storage: StorageRegistry
    scratch_root: Path
    predictors: Predictors | None = None
    archive_limits: ArchiveLimits = field(default_factory=ArchiveLimits)
    resolve_env: Callable[[str], str] = str  # turns "secret:NAME" into its value
    redact: Callable[[str], str] = str  # hides secret values in logs
    service_url: str | None = None
    gallery: Gallery | None = None
    items: ItemSink | None = None  # per-item results (None: not recorded, e.g. on a Ray node)
    # Per-model Python environments (None: worker commands get the base interpreter).
    environments: EnvironmentManager | None = None
    # How worker commands are isolated, and where local paths may lie (None: anywhere).
    sandbox: Sandbox = field(default_factory=lambda: make_sandbox(SandboxConfig()))
    paths: PathPolicy | None = None


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
        self.log = JobLog(ctx.jobs, job.id, ctx.redact)
        self.items = AttemptItems(ctx.items, job.id, self.log.system)
        self.workdir = ctx.scratch_root / f"{job.id}-{job.attempt}"
        self.data_dir = self.workdir / "data"
        self.model_dir = self.workdir / "model"
        self.output_dir = self.workdir / "output"
        self.deadline = time.monotonic() + self.spec.timeout_s
        self._timer: threading.Timer | None = None
        self._last_stderr = ""  # the last non-blank stderr line, quoted in a failure reason
        self._progress: tuple[int, int] | None = None  # stored with the next status change
        # The GPUs the executor gave this job (None: it does no GPU accounting); the job's
        # environment and sandbox (`GpuGrant.device_paths`) show it only these.
        self.gpus: GpuGrant | None = None
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
            self._move(Status.WAITING_DOWNLOAD)
            self._prepare_folders()
            self._stage_in()
            self._prepare_environment()
            self._check_cancelled()
            self._move(Status.RUNNING)
            model_info = self._run_model()
            self._check_cancelled()
            self._move(Status.UPLOADING)
            location = self._stage_out()
            self.log.system(f"results uploaded to {location}")
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
        if reason:
            self.log.system(f"{status.value}: {reason}")
        else:
            self.log.system(f"{status.value}")
        if status == Status.FAILED:
            if not runs_in_predictor_pool(self.job.spec):  # its items share the job's outcome
                self.items.fail_worker(self.data_dir, reason or "failed")
            if not retry:  # before the flush, so that it is stored with the rest
                self.log.system("not retried: a new attempt would meet the same input")
            self.log.flush()
            if self._progress is not None:
                self.ctx.jobs.set_progress(self.job.id, *self._progress)
            record = self.ctx.jobs.fail_or_retry(
                self.job.id, reason or "failed", owner=self.owner, backoff_s=2.0, retry=retry
            )
            ended = record.status == Status.FAILED.value
        else:
            self._commit_move(status, reason=reason, result=result)
            ended = True
        if ended and runs_in_predictor_pool(self.job.spec):
            discard(self.ctx.scratch_root, self.job.id)  # no attempt will resume it now
        return status.value

    def _move(self, status: Status) -> None:
        self._check_cancelled()
        self._commit_move(status)
        self.log.system(f"status: {status.value}")

    def _commit_move(
        self, status: Status, *, reason: str | None = None, result: JobResult | None = None
    ) -> None:
        """The status change, committed with what waits to be stored: the log lines written
        since the last write, the final images done/total, the result."""
        progress, self._progress = self._progress, None

        def write(lines: list[tuple[datetime, str, str]]) -> None:
            self.ctx.jobs.transition(
                self.job.id,
                status,
                reason=reason,
                owner=self.owner,
                progress=progress,
                result=result,
                log_lines=lines,
            )

        self.log.flush_with(write)

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

    # --- stage in -----------------------------------------------------------------------

    def _stage_in(self) -> None:
        if self.ctx.paths is not None:  # checked at creation; again now, symlinks may have moved
            self.ctx.paths.check_spec(self.spec)
        uri = self.spec.data.input_uri
        self.log.system(f"downloading input {uri}")
        self._fetch(uri, self.data_dir, what="input")
        self.log.system(f"input ready: {count_files(self.data_dir)} file(s)")
        self._fetch_model()

    def _fetch(self, uri: str, dest: Path, *, what: str) -> None:
        """Download `uri` into `dest`, extracting it when it is an archive."""
        budget = self.spec.resources.disk_size * GIB
        storage = self.ctx.storage.for_uri(uri)
        if extract_in_place(storage, uri, dest, self.ctx.archive_limits, budget):
            return  # a local archive: extracted from where it lies, no copy into scratch
        download_dir = self.workdir / f"download-{what}"
        download_dir.mkdir()
        # Sizes checked before copying, bytes counted while copying (InputRejected past it).
        limit = f"the job's disk_size of {self.spec.resources.disk_size} GiB"
        counted = ByteBudget(budget, label=what, limit_text=limit)
        fetched = storage.download(uri, download_dir, counted)
        used = tree_size(download_dir)
        if used > budget:
            raise InputRejected(
                f"{what} {uri} is {used / GIB:.2f} GiB, more than the job's disk_size of "
                f"{self.spec.resources.disk_size} GiB"
            )
        if fetched.is_file() and archive_kind(fetched):
            extract(fetched, dest, self.ctx.archive_limits, budget_bytes=budget - used)
            fetched.unlink()
        elif fetched.is_file():
            shutil.move(fetched, dest / fetched.name)
        else:
            for child in fetched.iterdir():
                shutil.move(child, dest / child.name)
        shutil.rmtree(download_dir, ignore_errors=True)

    def _fetch_model(self) -> None:
        model = self.spec.model
        if model.source_type == "builtin":
            self.log.system(f"model: built-in {model.source_uri}")
            return
        self.log.system(f"fetching model ({model.source_type}) {model.source_uri}")
        if model.source_type == "local":
            source = Path(model.source_uri.removeprefix("file://")).expanduser()
            if not source.is_dir():
                raise JobFailed(f"model {model.source_uri}: no such folder")
            shutil.rmtree(self.model_dir)
            shutil.copytree(
                source, self.model_dir, symlinks=True, ignore=shutil.ignore_patterns(".git")
            )
        elif model.source_type == "git":
            self._git_clone(model.source_uri)
        else:
            self._fetch(model.source_uri, self.model_dir, what="model")

    def _git_clone(self, url: str) -> None:
        shutil.rmtree(self.model_dir)
        command = ["git", "clone", "--depth", "1", "--quiet", url, str(self.model_dir)]
        env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
        try:
            result = subprocess.run(
                command,
                capture_output=True,
                text=True,
                env=env,
                timeout=self._remaining(),
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise JobFailed(
                f"model {url}: git clone did not finish before the job's timeout"
            ) from None
        if result.returncode != 0:
            detail = one_line(
                result.stderr.strip().splitlines()[-1] if result.stderr.strip() else ""
            )
            raise JobFailed(
                f"model {url}: git clone failed: {detail or f'exit code {result.returncode}'}"
            )

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
        stored = [time.monotonic()]  # when progress was last stored

        def progress(done: int, total: int) -> None:
            # The final count goes with the next status change (a short job: its only write).
            self._progress = (done, total)
            now = time.monotonic()
            if done < total and now - stored[0] >= PROGRESS_EVERY_S:
                self.ctx.jobs.set_progress(self.job.id, done, total)
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
        )
        self.items.finish(self.output_dir)  # the last results, errors.json if any failed
        images, errors = manifest.get("images", 0), manifest.get("errors", 0)
        self.log.system(f"classified {images} image(s), {errors} could not be decoded")
        if gallery is not None and thumbnails is not None:
            gallery.save(self.job.id, self.data_dir, self.output_dir, thumbnails)
        elif gallery is not None:
            gallery.save(self.job.id, self.data_dir, self.output_dir)
        return manifest.get("model", manifest)

    def job_environment(self) -> dict[str, str]:
        """The process environment of a worker command (DESIGN.md's job environment)."""
        # An allow-list (autoinfer.sandbox.environ): the job's own variables, the locale, and
        # the sandbox's PATH (its environment's `bin/` first, else the base interpreter's, never
        # the service's venv) and HOME; nothing else of the service's environment.
        env = {**inherited(os.environ), **self.ctx.sandbox.base_environment(self._python())}
        paths = {
            "DATA_PATH": str(self.data_dir),
            "OUTPUT_PATH": str(self.output_dir),
            "MODEL_PATH": str(self.model_dir),
        }
        for name, value in paths.items():
            env[f"AUTOINFER_{name}"] = value
            env[f"TRAINML_{name}"] = value
        env["AUTOINFER_JOB_ID"] = self.job.id
        env["AUTOINFER_JOB_NAME"] = self.job.name
        env["PYTHONUNBUFFERED"] = "1"
        env.update(self.gpus.environment() if self.gpus is not None else {})
        if self.environment is not None:
            env["VIRTUAL_ENV"] = str(self.environment.root)
        for variable in self.spec.environment.env:
            env[variable.key] = self.ctx.resolve_env(variable.value)
        for name in self.spec.environment.secrets:
            env[name] = self.ctx.resolve_env(f"secret:{name}")
        return env

    def _run_command(self, command: str) -> None:
        self.log.system(f"$ {command}")
        process = subprocess.Popen(
            self.ctx.sandbox.argv(self._worker_run(command)),
            cwd=self.model_dir,
            env=self.job_environment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group, so stop kills the whole tree
        )
        readers = [
            threading.Thread(target=self._pump, args=(process.stdout, "stdout"), daemon=True),
            threading.Thread(target=self._pump, args=(process.stderr, "stderr"), daemon=True),
        ]
        for reader in readers:
            reader.start()
        while process.poll() is None:
            if self.cancellation.event.wait(0.1):
                kill_process_group(process)
                break
            self.log.flush_if_due()
        for reader in readers:
            reader.join(timeout=5)
        self.log.flush()
        self._check_cancelled()
        if process.returncode != 0:
            raise JobFailed(
                f"worker command '{command}' exited with code {process.returncode}"
                + self._last_error_line()
            )

    def _check_sandbox(self) -> None:
        """Fail at once, before any download, when worker commands cannot run here."""
        problem = None if runs_in_predictor_pool(self.job.spec) else self.ctx.sandbox.problem()
        if problem is not None:
            raise SandboxUnavailable(problem)

    def _python(self) -> PythonEnvironment:
        return self.environment if self.environment is not None else BaseInterpreter()

    def _worker_run(self, command: str) -> WorkerRun:
        """`command` with what its sandbox shows it: the job's folders, Python, GPUs, network."""
        devices = self.gpus.device_paths() if self.gpus is not None else []
        return WorkerRun(
            command,
            self.workdir,
            self.data_dir,
            self.output_dir,
            self.model_dir,
            python=self._python(),
            network=self.spec.environment.network,
            devices=tuple(Path(device) for device in devices),
            tmp_bytes=self.spec.resources.disk_size * GIB,
        )

    def _pump(self, pipe, stream: str) -> None:  # type: ignore[no-untyped-def]
        for line in read_lines(pipe):  # a huge line is cut as it is read, never held whole
            self.log.write(stream, line)
            if stream == "stderr" and line.strip():
                self._last_stderr = line.strip()
        pipe.close()

    def _last_error_line(self) -> str:
        return f": {one_line(self._last_stderr)}" if self._last_stderr else ""

    def _remaining(self) -> float:
        return max(1.0, self.deadline - time.monotonic())

    # --- stage out ----------------------------------------------------------------------

    def _stage_out(self) -> str:
        """Upload the output; retried through a transient store outage until the job's timeout
        (output names are deterministic and the zip byte-identical, so a repeat overwrites)."""
        data = self.spec.data
        if self.ctx.paths is not None:  # the output folder may have become a symlink meanwhile
            self.ctx.paths.check_spec(self.spec)
        storage = self.ctx.storage.for_uri(data.output_uri)
        if not storage.writable:
            raise StorageError(f"{data.output_uri}: this storage cannot be written to")
        name = safe_file_name(self.spec.name)

        def on_retry(error: StorageError, wait_s: float, retry: int) -> None:
            self.log.system(f"upload failed ({error}); retry {retry} in {wait_s:.1f} s")

        def retrying(call: Callable[[], T]) -> T:
            return retry_transient(
                call, deadline=self.deadline, cancelled=self.cancellation.event, on_retry=on_retry
            )

        if data.output_options.archive:
            archive = make_zip(self.output_dir, self.workdir / f"{name}.zip")
            target = join_uri(data.output_uri, archive.name)
            self.log.system(
                f"uploading {archive.name} ({archive.stat().st_size} bytes) to {target}"
            )
            retrying(lambda: storage.upload(archive, target))
            return target
        target = join_uri(data.output_uri, name)
        uploaded = retrying(lambda: storage.upload_tree(self.output_dir, target))
        self.log.system(f"uploaded {len(uploaded)} file(s) to {target}/")
        return target + "/"


def runs_in_predictor_pool(spec: dict[str, Any]) -> bool:
    """Whether a job (its spec as stored) runs a built-in model in the shared warm predictor
    pool rather than worker commands of its own; such a job needs no cores of its own."""
    model = spec.get("model") or {}
    return model.get("source_type") == "builtin" and not spec.get("workers")


def kill_process_group(process: subprocess.Popen) -> None:  # type: ignore[type-arg]
    """SIGTERM the process group, then SIGKILL what is left after a grace period."""
    for sig, wait in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            # The leader is gone; make sure no child in its group survives it.
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            return
        except subprocess.TimeoutExpired:
            continue


def tree_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def count_files(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file())
