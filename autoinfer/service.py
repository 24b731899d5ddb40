"""The whole service in one process: store, storage, executor, event pipeline and API state."""

from __future__ import annotations

import logging
import os
import secrets
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autoinfer.config import Config
from autoinfer.db import Database, default_url
from autoinfer.disk_usage import DataDirUsage
from autoinfer.environments import EnvironmentManager
from autoinfer.errors import AuthError, Conflict
from autoinfer.executors import Executor
from autoinfer.executors.registry import make_executor
from autoinfer.file_modes import private_file, secure_data_dir
from autoinfer.gallery import Gallery
from autoinfer.housekeeping import Housekeeping, PeriodicTask
from autoinfer.jobs.items import JobItems
from autoinfer.jobs.records import JobRecord
from autoinfer.jobs.service import JobService, deterministic_job_id
from autoinfer.jobs.spec import JobSpec
from autoinfer.keys import Keys, Principal
from autoinfer.notifications.service import Notifications
from autoinfer.overview import SAMPLE_S, OverviewHistory
from autoinfer.retention import RetentionSweep
from autoinfer.runner import RunnerContext
from autoinfer.sandbox import admission_for, make_sandbox
from autoinfer.secrets import Secrets, install_log_redaction, load_master_key
from autoinfer.storage import open_registry

if TYPE_CHECKING:
    from autoinfer.predictors.pool import PredictorPool

log = logging.getLogger("autoinfer.service")


class AutoInferService:
    """Wires the parts of DESIGN.md's architecture together for `autoinfer serve` and tests."""

    def __init__(self, config: Config, *, insecure: bool | None = None) -> None:
        self.config = config
        self.insecure = config.insecure if insecure is None else insecure
        self.data_dir = config.data_path
        secure_data_dir(self.data_dir)  # 0711, its entries the owner's (autoinfer.file_modes)
        if config.database_url is None:
            private_file(self.data_dir / "autoinfer.db")  # its -wal and -shm inherit 0600
        self.db = Database(config.database_url or default_url(self.data_dir))
        self.jobs = JobService(self.db)
        self.secrets = Secrets(self.db, load_master_key(self.data_dir))
        install_log_redaction(self.secrets.redactor)
        self.storage = open_registry(config, self.resolve_secret)
        # Worker commands' isolation, and what a job must pass to be created (both: sandbox/).
        self.sandbox = make_sandbox(config.sandbox)
        self.admission = admission_for(config, self.storage, insecure=self.insecure)
        self.notifications = Notifications.from_config(config, self.db, self.resolve_secret)
        if self.notifications.enabled:  # the outbox row commits with the job's end
            self.jobs.add_terminal_hook(self.notifications.outbox.enqueue)
        self.items = JobItems(self.db)
        self.api_key = self._load_api_key()
        self.keys = Keys(self.db, bootstrap=self.api_key)
        self.url: str | None = None  # set once the HTTP server is listening
        self._predictors: PredictorPool | None = None
        self._predictors_lock = threading.Lock()
        self.environments = EnvironmentManager(self.data_dir / "environments", config.environments)
        self.gallery = Gallery(self.data_dir / "gallery")
        self.runner_context = RunnerContext(
            jobs=self.jobs,
            storage=self.storage,
            scratch_root=self.data_dir / "scratch",
            predictors=self,  # the pool starts lazily on the first built-in job
            resolve_env=self.resolve_secret,
            redact=self.redact,
            gallery=self.gallery,
            items=self.items,
            environments=self.environments,
            sandbox=self.sandbox,
            paths=self.admission.paths,
        )
        self.executor: Executor = self._make_executor()
        self._housekeeping_stop = threading.Event()
        self.data_usage = DataDirUsage(self.data_dir)
        self.overview = OverviewHistory(
            self.db, self._images_classified, notifications=self._notifications_pending
        )
        self.retention = RetentionSweep(
            self.db, self.gallery, config.retention, stopping=self._housekeeping_stop
        )
        self.housekeeping = Housekeeping(
            [
                PeriodicTask("overview", SAMPLE_S, self.overview.sample),
                PeriodicTask("data-dir-size", 60.0, self.data_usage.refresh),
                PeriodicTask("retention", config.retention.interval_s, self.retention.run, 30.0),
                PeriodicTask(
                    "environments",  # idle per-model environments
                    config.environments.sweep_interval_s,
                    self.environments.sweep,
                    60.0,
                ),
            ],
            stopping=self._housekeeping_stop,
        )
        from autoinfer.pipeline import EventPipeline

        self.pipeline = EventPipeline(
            config,
            self.db,
            self.jobs,
            self.storage,
            api_url_getter=lambda: self.url,
            on_jobs_created=self.executor.wake,
            resolve_secret=self.resolve_secret,
            admit=self.admission.paths.check_spec if self.admission.paths else None,
        )
        self._started = False

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        self.runner_context.scratch_root.mkdir(parents=True, exist_ok=True)
        self.executor.start()
        self.pipeline.start()
        self.notifications.start()
        self.housekeeping.start()
        log.info("autoinfer service started (data in %s)", self.data_dir)
        self._log_sandbox()

    def stop(self, grace_s: float | None = None) -> None:
        """Stop taking work; running jobs get `grace_s` (default `executor.grace_s`) to finish,
        then are handed back to the queue for the next start."""
        if grace_s is None:
            grace_s = self.config.executor.grace_s
        if not self._started:
            return
        self._started = False
        self.housekeeping.stop()
        self.pipeline.stop()
        self.executor.stop(grace_s)
        self.notifications.stop()  # what is left pending is sent after the next start
        if self._predictors is not None:
            self._predictors.close()
        self.db.dispose()

    def _make_executor(self) -> Executor:
        return make_executor(self.runner_context, self.jobs, self.config)

    # --- predictors (the warm pool, created on first use) -------------------------------

    @property
    def predictors(self) -> PredictorPool:
        with self._predictors_lock:  # concurrent first jobs must share one pool
            if self._predictors is None:
                from autoinfer.predictors.pool import PredictorPool

                settings = self.config.predictors
                self._predictors = PredictorPool(
                    self.config.cache_path,
                    workers=settings.worker_count,
                    batch_size=settings.batch_size,
                    max_wait_ms=settings.max_wait_ms,
                    idle_s=settings.idle_s,
                    threads_per_worker=settings.threads_per_worker,
                    max_image_pixels=settings.max_image_pixels,
                    worker_memory_mb=settings.worker_memory_mb,
                    device=settings.device,
                    cuda_device=settings.cuda_device,
                    decode_threads=settings.cuda_decode_threads,
                )
            return self._predictors

    def _images_classified(self) -> int:
        """Images this replica's built-in models classified (0 before the pool starts; asking
        does not start it)."""
        pool = self._predictors
        return int(pool.stats().get("images_classified", 0)) if pool is not None else 0

    def _notifications_pending(self) -> int:
        """Notification deliveries not yet made (database-wide), for the overview."""
        return self.notifications.outbox.counts().get("pending", 0)

    makes_thumbnails = True  # the pool's classify takes `thumbnails`

    def classify(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return self.predictors.classify(*args, **kwargs)

    # --- jobs ---------------------------------------------------------------------------

    def create_job(
        self,
        spec: JobSpec,
        *,
        idempotency_key: str | None = None,
        source: str = "api",
        principal: Principal | None = None,
    ) -> tuple[JobRecord, bool]:
        """Create (or, with a used `idempotency_key`, find) a job; 403/422 first if the
        service's admission refuses it for `principal` (autoinfer.sandbox.admission)."""
        self.admission.check(spec, principal)
        job_id = deterministic_job_id("api", idempotency_key) if idempotency_key else None
        job, created = self.jobs.create(spec, job_id=job_id, source=source)
        if not created and idempotency_key and job.spec != spec.model_dump(mode="json"):
            raise Conflict(
                f"Idempotency-Key {idempotency_key[:200]!r} was used for a different job spec "
                f"(job {job.id}); send the same spec to get that job, or use a new key"
            )
        if created:
            self.executor.wake()
        return job, created

    def _log_sandbox(self) -> None:
        """Say how worker commands will run: warned about when unsandboxed or impossible."""
        problem = self.sandbox.problem()
        if self.sandbox.kind == "none":
            log.warning("%s", self.sandbox.describe())
        elif problem is not None:
            log.warning("jobs with worker commands will fail: %s", problem)
        else:
            log.info("%s", self.sandbox.describe())

    def stop_job(self, job_id: str) -> JobRecord:
        job = self.jobs.request_stop(job_id)
        if not job.terminal:
            self.executor.cancel(job_id)
        return job

    def retry_job(self, job_id: str) -> JobRecord:
        job = self.jobs.retry(job_id)
        self.executor.wake()
        return job

    # --- keys and secrets ---------------------------------------------------------------

    def _load_api_key(self) -> str | None:
        configured = os.environ.get("AUTOINFER_API_KEY") or self.config.api_key
        if configured:
            return self.resolve_secret(configured)
        key_file = self.data_dir / "api_key"
        if key_file.exists():
            return key_file.read_text().strip()
        key = "ai_" + secrets.token_urlsafe(32)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(key + "\n")
        return key

    @property
    def api_key_file(self) -> Path:
        return self.data_dir / "api_key"

    def check_api_key(self, token: str) -> bool:
        """Whether `token` may post events (the webhook's fallback when it has no token of its
        own): False for an unknown or revoked key, Forbidden for a key whose role is too low."""
        try:
            self.keys.authorize(token, "POST", "/v1/events/s3")
        except AuthError:
            return False
        return True

    def resolve_secret(self, value: str) -> str:
        """Resolve `secret:NAME` references (stored secret, else AUTOINFER_SECRET_<NAME>);
        other values are returned as they are. ConfigError naming the secret if it is unknown."""
        if not value.startswith("secret:"):
            return value
        return self.secrets.resolve(value.removeprefix("secret:"))

    def redact(self, text: str) -> str:
        """`text` with every known secret value replaced by `***`."""
        return self.secrets.redactor(text)
