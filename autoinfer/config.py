"""The `autoinfer.yaml` model: pydantic, with `AUTOINFER_...` environment overrides."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from autoinfer.api.limits import LimitsConfig
from autoinfer.environments.settings import EnvironmentsConfig
from autoinfer.errors import ConfigError
from autoinfer.jobs.spec import describe_validation_error
from autoinfer.notifications.config import NotificationTarget
from autoinfer.sandbox.settings import SandboxConfig

ENV_PREFIX = "AUTOINFER_"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ApiConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)


class StoreConfig(_Strict):
    """A named object store: a local folder (bucket = sub-folder) or an S3 endpoint."""

    type: Literal["local", "s3"]
    root: str | None = None  # local
    endpoint_url: str | None = None  # s3
    region: str | None = None
    addressing_style: Literal["auto", "virtual", "path"] | None = None
    credentials: str | None = (
        None  # "secret:NAME" holding "ACCESS_KEY:SECRET_KEY", or None for the AWS chain
    )
    profile: str | None = None
    buckets: list[str] = Field(default_factory=list)  # s3: bucket names/globs this store serves


class SourceConfig(_Strict):
    """An event source: watch (local store), webhook, sqs or poll."""

    type: Literal["watch", "webhook", "sqs", "poll"]
    store: str | None = None
    token: str | None = None  # webhook bearer token / HMAC key (may be "secret:NAME")
    queue_url: str | None = None  # sqs
    bucket: str | None = None  # poll
    prefix: str = ""
    interval_s: float = Field(30.0, gt=0)
    backfill: bool = False
    rescan_s: float = Field(30.0, gt=0)  # watch: periodic full rescan
    # watch: the backstop where the kernel cannot say a file is complete (network filesystems,
    # files of another user, no inotify): how long its size and mtime must stay unchanged.
    # On a local disk a file counts as written when no process holds it open for writing.
    settle_s: float = Field(0.5, ge=0, le=3600)
    max_receive: int = Field(5, ge=1)  # sqs: deliveries before a poison message is left to the DLQ
    wait_time_s: int = Field(20, ge=0, le=20)  # sqs: long-poll wait


class TriggerConfig(_Strict):
    """A rule: events on bucket/prefix/suffix → a job from a template, or a Python handler."""

    name: str
    bucket: str
    prefix: str = ""
    suffix: str = ""
    events: list[str] = Field(default_factory=lambda: ["ObjectCreated:*"])
    job: dict[str, Any] | None = None
    handler: str | None = None  # "module:function", Lambda signature handler(event, context)
    max_attempts: int = Field(3, ge=1, le=100)


class ExecutorConfig(_Strict):
    type: Literal["local", "ray"] = "local"
    max_jobs: int = Field(4, ge=1, le=1024)
    address: str | None = None  # ray
    lease_s: float = Field(30.0, gt=0)
    # On shutdown (SIGTERM): how long running jobs may go on before they are handed back.
    grace_s: float = Field(30.0, ge=0)


class PredictorsConfig(_Strict):
    """The warm predictor pool that built-in models run in (autoinfer.predictors.PredictorPool).

    By default one single-threaded worker process per core (at most MAX_DEFAULT_WORKERS, each
    holds the model in memory): for a small CPU model, processes side by side do more images
    per second than one process whose runtime splits every batch across the cores.
    """

    workers: int | None = Field(None, ge=1, le=64)  # worker processes per model
    batch_size: int = Field(16, ge=1, le=1024)
    max_wait_ms: int = Field(20, ge=0, le=60_000)  # how long a batch may wait to fill
    idle_s: float = Field(300.0, gt=0)  # an idle worker is released after this
    # Threads that decode a Ray job's images on its node (local workers decode their own).
    decode_threads: int = Field(2, ge=1, le=64)
    threads_per_worker: int | None = Field(None, ge=1, le=256)  # None: the cores shared out
    # What one image may cost (autoinfer.predictors.limits): an image of more pixels (read
    # from its header) gets an `error` prediction undecoded; each worker process's data
    # segment is bounded (MiB; null: unbounded), so a decode past it fails alone.
    max_image_pixels: int = Field(40_000_000, ge=1_000_000, le=1_000_000_000)
    worker_memory_mb: int | None = Field(4096, ge=512)
    # Built-in model jobs one executor runs at once. They hold no cores and no `max_jobs` slot
    # (those are for worker commands): their images queue for the pool's workers, so many jobs
    # keep its batches full. None: workers × batch_size, at least 16.
    max_jobs: int | None = Field(None, ge=1, le=4096)
    # Where built-in models run: "cuda" uses ONNX Runtime's CUDA provider when onnxruntime-gpu
    # and a CUDA device are there (else the CPU, said in one warning line).
    device: Literal["cpu", "cuda"] = "cpu"
    # The CUDA worker group (jobs with resources.gpu_count >= 1, or every job with device
    # cuda): the GPU it runs on (index in PCI bus order, as `gpus:` numbers them; among the
    # service's own CUDA_VISIBLE_DEVICES where it was started with some), and the threads
    # that decode its images (None: one per core, at least 2, at most 16).
    cuda_device: int = Field(0, ge=0, le=63)
    cuda_decode_threads: int | None = Field(None, ge=1, le=256)

    @property
    def worker_count(self) -> int:
        """`workers`, or one per core up to MAX_DEFAULT_WORKERS."""
        return self.workers or max(1, min(os.cpu_count() or 1, MAX_DEFAULT_WORKERS))

    @property
    def job_limit(self) -> int:
        """`max_jobs`, or workers × batch_size (at least 16)."""
        return self.max_jobs or max(16, self.worker_count * self.batch_size)


MAX_DEFAULT_WORKERS = 4


class RetentionConfig(_Strict):
    """How long what the service keeps is kept, in days (0: forever); see `autoinfer.retention`.

    Only ended jobs (finished, failed, stopped) and settled events are ever removed, measured
    from when the job ended or the event arrived.
    """

    jobs_days: float = Field(30.0, ge=0)  # job records with their transitions and log lines
    events_days: float = Field(30.0, ge=0)  # inbox rows (duplicate protection: see README)
    gallery_days: float = Field(7.0, ge=0)  # dashboard thumbnails of finished jobs
    logs_days: float = Field(30.0, ge=0)  # log lines of ended jobs (the job record stays)
    interval_s: float = Field(600.0, gt=0)  # how often the sweep runs
    batch_size: int = Field(500, ge=1, le=10_000)  # rows removed per transaction


class GpuConfig(_Strict):
    """One GPU of the configured inventory (`gpus:`; see `autoinfer.executors.gpus`). Listing
    GPUs replaces detection (NVML, else the driver's /proc files)."""

    index: int = Field(ge=0, le=255, description="NVML / CUDA (PCI bus order) index")
    type: str = Field(min_length=1, max_length=100, description="e.g. rtx3090, a100, 'RTX 2080 Ti'")
    # The device node's number (`/dev/nvidia<minor>`); NVML's minor number, usually the index.
    minor: int | None = Field(None, ge=0, le=255)


class Config(_Strict):
    """The whole service configuration."""

    data_dir: Path = Path("./.autoinfer")
    database_url: str | None = None
    cache_dir: Path | None = None  # exported models; default <data_dir>/cache
    api: ApiConfig = Field(default_factory=ApiConfig)
    stores: dict[str, StoreConfig] = Field(default_factory=dict)
    sources: list[SourceConfig] = Field(default_factory=list)
    triggers: list[TriggerConfig] = Field(default_factory=list)
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)
    # The GPUs the local executor hands out; None: detected. `[]`: none (GPU jobs run on CPU).
    gpus: list[GpuConfig] | None = None
    predictors: PredictorsConfig = Field(default_factory=PredictorsConfig)
    # Per-model Python environments built with uv (autoinfer.environments.settings).
    environments: EnvironmentsConfig = Field(default_factory=EnvironmentsConfig)
    # Where job ends are announced: signed webhooks or SQS (autoinfer.notifications.config).
    notifications: list[NotificationTarget] = Field(default_factory=list)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    # Request limits: body caps, timeouts, follow streams (autoinfer.api.limits).
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    # How worker commands are isolated: `bwrap` (default) or `none` (autoinfer.sandbox).
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)
    # Folders (besides local stores' roots) that jobs' local paths may name on a secure
    # service; data_dir never (autoinfer.sandbox.admission).
    allowed_paths: list[Path] = Field(default_factory=list)
    # The least key role that may create jobs with worker commands: submit, code or admin.
    worker_commands_role: Literal["submit", "code", "admin"] = "submit"
    insecure: bool = False
    # The API key the service accepts (besides keys created later); "secret:NAME" allowed.
    api_key: str | None = None

    @property
    def base_dir(self) -> Path:
        """Relative paths in the file are relative to the folder holding it."""
        return getattr(self, "_base_dir", Path.cwd())

    def resolve_path(self, value: str | Path) -> Path:
        path = Path(value).expanduser()
        return path if path.is_absolute() else (self.base_dir / path).resolve()

    @property
    def data_path(self) -> Path:
        return self.resolve_path(self.data_dir)

    @property
    def cache_path(self) -> Path:
        return self.resolve_path(self.cache_dir) if self.cache_dir else self.data_path / "cache"


def load_config(path: str | Path | None = None, env: dict[str, str] | None = None) -> Config:
    """Read the YAML file (if any), apply `AUTOINFER_...` overrides and validate."""
    env = dict(os.environ if env is None else env)
    raw: dict[str, Any] = {}
    base_dir = Path.cwd()
    if path is not None:
        file = Path(path)
        try:
            raw = yaml.safe_load(file.read_text()) or {}
        except FileNotFoundError:
            raise ConfigError(f"{file}: no such configuration file") from None
        except yaml.YAMLError as error:
            raise ConfigError(f"{file}: not valid YAML: {error}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{file}: the top level must be a mapping")
        base_dir = file.resolve().parent
    apply_env_overrides(raw, env)
    try:
        config = Config.model_validate(raw)
    except ValidationError as error:
        where = f"{path}: " if path else ""
        raise ConfigError(where + describe_validation_error(error)) from None
    object.__setattr__(config, "_base_dir", base_dir)
    return config


def apply_env_overrides(raw: dict[str, Any], env: dict[str, str]) -> None:
    """`AUTOINFER_API__PORT=9000` sets `api.port`; `AUTOINFER_DATA_DIR` sets `data_dir`.

    Nested keys are separated by a double underscore; values are parsed as YAML scalars.
    """
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name in RESERVED_ENV:
            continue
        path = name[len(ENV_PREFIX) :].lower().split("__")
        if path[0] not in Config.model_fields:
            continue
        target = raw
        for part in path[:-1]:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise ConfigError(f"{name}: cannot override inside a non-mapping value")
        target[path[-1]] = yaml.safe_load(value) if value else value


# Variables that configure a job's own process (set by the runner), not the service.
RESERVED_ENV = frozenset(
    {
        "AUTOINFER_DATA_PATH",
        "AUTOINFER_OUTPUT_PATH",
        "AUTOINFER_MODEL_PATH",
        "AUTOINFER_JOB_ID",
        "AUTOINFER_JOB_NAME",
        "AUTOINFER_URL",
        "AUTOINFER_KEY",
    }
)
