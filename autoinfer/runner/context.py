"""What a runner is given: the service's parts it shares with every other runner, the job's
cancellation, and the two seams it calls through — `JobReporter` (where its status changes,
progress and log lines go) and `Predictors` (the warm pool that classifies built-in jobs).

Locally `JobService` is the reporter; on a Ray node it is the mailbox that forwards the same
calls to the service (`executors.ray_node.ReportingJobs`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from autoinfer.gallery import Gallery
from autoinfer.item_results import ItemSink
from autoinfer.jobs.items import ItemBatch
from autoinfer.jobs.records import JobRecord
from autoinfer.jobs.service import JobResult
from autoinfer.jobs.spec import Status
from autoinfer.sandbox import PathPolicy, Sandbox, SandboxConfig, make_sandbox
from autoinfer.storage import StorageRegistry
from autoinfer.storage.archives import ArchiveLimits

if TYPE_CHECKING:
    from autoinfer.environments import EnvironmentManager

GIB = 1024**3

#: One stored log line: when, which stream ("stdout", "stderr", "system"), the text.
LogLine = tuple[datetime, str, str]


class JobReporter(Protocol):
    """What a runner tells the job service about its attempt (all under its lease, `owner`)."""

    def transition(
        self,
        job_id: str,
        status: Status,
        *,
        reason: str | None = None,
        owner: str | None = None,
        progress: tuple[int, int] | None = None,
        result: JobResult | None = None,
        log_lines: Sequence[LogLine] = (),
        passed: Sequence[tuple[Status, datetime]] = (),
        items: ItemBatch | None = None,
    ) -> None:
        """Move the job to `status`, with what goes with the move (log lines, progress, result,
        item results), after the statuses it `passed` through since the last move (at their
        times)."""
        ...

    def fail_or_retry(
        self, job_id: str, reason: str, *, owner: str, backoff_s: float, retry: bool = True
    ) -> JobRecord | None:
        """A failed attempt: retried later while attempts remain, else failed. The job as it
        now is, or None where the outcome is decided elsewhere (a Ray node's mailbox)."""
        ...

    def set_progress(self, job_id: str, done: int, total: int) -> None:
        """Images done / total of a running job."""
        ...

    def append_log(self, job_id: str, lines: list[LogLine]) -> None:
        """Store log lines (in order)."""
        ...


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


@dataclass
class RunnerContext:
    """What every runner of a service shares."""

    # What runners report through: the JobService in the service, a Ray node's mailbox reporter
    # there. Executors claim from the JobService they are given, not from this.
    jobs: JobReporter
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


def runs_in_predictor_pool(spec: dict[str, Any]) -> bool:
    """Whether a job (its spec as stored) runs a built-in model in the shared warm predictor
    pool rather than worker commands of its own; such a job needs no cores of its own."""
    model = spec.get("model") or {}
    return model.get("source_type") == "builtin" and not spec.get("workers")
