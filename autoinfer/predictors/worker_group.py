"""The local pool's queues: one `ModelWorkers` per model (its queued images and its worker
processes, which take batches from it), the `QueuedJob` a `classify` call waits on, and the
`QueuedImage`s between them. `PredictorPool` (`predictors.pool`) owns them.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autoinfer.errors import ModelError
from autoinfer.gallery import Thumbnails
from autoinfer.predictors.images import Preprocessing
from autoinfer.predictors.worker import Worker

if TYPE_CHECKING:
    from autoinfer.predictors.pool import PredictorPool

POLL_S = 0.05  # how often a waiting job looks at its `cancelled` event


@dataclass(eq=False)
class QueuedJob:
    """One `classify` call's shared state: what the worker threads report back."""

    images: list[Path]
    files: list[str]  # names relative to the data folder, for the prediction files
    thumbnails: Thumbnails | None = None
    cond: threading.Condition = field(default_factory=threading.Condition)
    results: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    in_flight: int = 0  # queued or in a worker, not finished yet
    error: BaseException | None = None
    closed: bool = False  # finished, failed or stopped: its queued images are dropped

    def finish_many(self, results: list[tuple[int, dict[str, Any]]]) -> None:
        """Results of several of the job's images (by index), handed back together."""
        with self.cond:
            self.results.extend(results)
            self.in_flight -= len(results)
            self.cond.notify_all()

    def drop(self) -> None:
        with self.cond:
            self.in_flight -= 1

    def fail(self, error: BaseException) -> None:
        with self.cond:
            if self.error is None:
                self.error = error
            self.closed = True
            self.cond.notify_all()

    def close(self) -> None:
        self.closed = True


@dataclass(frozen=True)
class Placement:
    """Where a model's worker group runs and how its workers are fed (`PredictorPool.placement`):
    the CPU group has up to `workers` processes that decode their batch and then run it; the CUDA
    group one process that decodes on `decode_threads` threads and holds two batches."""

    device: str  # "cpu" | "cuda"
    providers: tuple[str, ...]  # ONNX Runtime's execution providers, in order of preference
    workers: int  # worker processes at most
    ort_threads: int  # ONNX Runtime's intra-op threads per process
    decode_threads: int = 1  # > 1: decode on that many threads, the next batch meanwhile
    in_flight: int = 1  # batches a worker holds at once
    environment: tuple[tuple[str, str], ...] = ()  # set in the process before the model loads


@dataclass(eq=False)
class QueuedImage:
    """One image of a job, queued for a worker."""

    job: QueuedJob
    index: int
    path: Path
    thumbnail: bool  # the worker also makes its gallery thumbnail
    queued: float = field(default_factory=time.monotonic)


class ModelWorkers:
    """One model source on one device: its queue of images and its worker processes."""

    def __init__(
        self, pool: PredictorPool, source: str, labels_uri: str | None, placement: Placement
    ) -> None:
        self.pool = pool
        self.source = source
        self.labels_uri = labels_uri
        self.placement = placement
        self.cond = threading.Condition()
        self.queue: deque[QueuedImage] = deque()
        self.workers: list[Worker] = []
        self.waiting = 0  # workers waiting for a batch
        self.info: dict[str, Any] | None = None
        self.preprocessing: Preprocessing | None = None
        self.start_error: ModelError | None = None
        self.start_failures = 0
        self.closing = False
        self.batches = self.images = self.crashes = 0

    def wait_ready(self, check: Callable[[], None]) -> Preprocessing:
        """Block until a worker has loaded the model (starting one if none runs); its
        preprocessing. Raises the load error when the model cannot be loaded."""
        with self.cond:
            failures = self.start_failures
            while self.preprocessing is None:
                if self.start_failures != failures and not self.workers:
                    assert self.start_error is not None
                    raise self.start_error
                if not self.workers:
                    self._start_worker()
                self.cond.wait(POLL_S)
                check()
            return self.preprocessing

    def enqueue(self, items: Iterable[QueuedImage]) -> None:
        """Queue images for the workers. Starts another worker when every worker is busy and
        fewer than `workers` run."""
        with self.cond:
            self.queue.extend(items)
            live = len(self.workers)
            starting = any(worker.starting for worker in self.workers)
            busy = not (self.waiting or starting or self.closing)
            if busy and live < self.placement.workers:
                self._start_worker()
            self.cond.notify_all()

    def take_batch(self, worker: Worker) -> list[QueuedImage] | None:
        """Up to `batch_size` queued images, once the batch is full or its oldest image has
        waited `max_wait_ms`. None when closing, or after
        `idle_s` without work: the worker is then already off the list, so that new work
        starts a fresh one."""
        pool = self.pool
        idle_until = time.monotonic() + pool.idle_s
        with self.cond:
            self.waiting += 1
            try:
                while not self.closing:
                    self._drop_closed()
                    now = time.monotonic()
                    batch = self._ready_batch(now)
                    if batch is not None:
                        return batch
                    if self.queue:
                        self.cond.wait(pool.max_wait_s - (now - self.queue[0].queued))
                    elif now >= idle_until:
                        self.workers.remove(worker)
                        return None
                    else:
                        self.cond.wait(idle_until - now)
                return None
            finally:
                self.waiting -= 1

    def take_ready(self) -> list[QueuedImage] | None:
        """A batch that `take_batch` would return now (full, or its oldest image waited
        `max_wait_ms`), without waiting; None when there is none (or when closing)."""
        with self.cond:
            if self.closing:
                return None
            self._drop_closed()
            return self._ready_batch(time.monotonic())

    def _ready_batch(self, now: float) -> list[QueuedImage] | None:
        """Under `cond`: up to `batch_size` queued images when the batch is full or its oldest
        image has waited `max_wait_ms`; else None."""
        pool = self.pool
        if not self.queue:
            return None
        full = len(self.queue) >= pool.batch_size
        if not full and now - self.queue[0].queued < pool.max_wait_s:
            return None
        count = min(pool.batch_size, len(self.queue))
        return [self.queue.popleft() for _ in range(count)]

    def requeue(self, items: list[QueuedImage]) -> None:
        with self.cond:
            self.queue.extendleft(reversed(items))
            self.cond.notify_all()

    def ready(self, worker: Worker, info: dict[str, Any], prep: Preprocessing) -> None:
        with self.cond:
            worker.starting = False
            if self.info is None:
                self.info, self.preprocessing = info, prep
            self.cond.notify_all()

    def failed_to_start(self, worker: Worker, error: ModelError) -> None:
        """A worker could not load the model: fail the queued jobs unless another worker runs."""
        with self.cond:
            self.workers.remove(worker)
            self.start_error = error
            self.start_failures += 1
            if not self.workers:
                while self.queue:
                    self.queue.popleft().job.fail(error)
            self.cond.notify_all()

    def gone(self, worker: Worker, crashed: bool) -> None:
        """A worker stopped (idle, closing) or crashed; a crashed one is replaced."""
        with self.cond:
            if worker in self.workers:
                self.workers.remove(worker)
            if crashed:
                self.crashes += 1
                if not self.closing:
                    self._start_worker()
            self.cond.notify_all()

    def counted(self, images: int) -> None:
        with self.cond:
            self.batches += 1
            self.images += images

    def stats(self) -> dict[str, int]:
        with self.cond:
            starting = sum(1 for worker in self.workers if worker.starting)
            busy = sum(1 for worker in self.workers if worker.busy)
            return {
                "workers_busy": busy,
                "workers_idle": len(self.workers) - busy - starting,
                "workers_starting": starting,
                "batches_run": self.batches,
                "images_classified": self.images,
                "images_queued": len(self.queue),
                "worker_crashes": self.crashes,
            }

    def live(self) -> bool:
        with self.cond:
            return bool(self.workers)

    def pids(self) -> list[int]:
        with self.cond:
            return [w.process.pid for w in self.workers if w.process and w.process.pid]

    def close(self) -> None:
        with self.cond:
            self.closing = True
            workers = list(self.workers)
            while self.queue:
                self.queue.popleft().job.fail(ModelError(f"{self.source}: predictor pool closed"))
            self.cond.notify_all()
        for worker in workers:
            worker.stop()

    def _start_worker(self) -> None:
        worker = Worker(self)
        self.workers.append(worker)
        worker.thread.start()

    def _drop_closed(self) -> None:
        if any(item.job.closed for item in self.queue):
            kept: deque[QueuedImage] = deque()
            for item in self.queue:
                if item.job.closed:
                    item.job.drop()
                else:
                    kept.append(item)
            self.queue = kept
