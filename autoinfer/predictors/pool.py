"""Warm predictor workers shared by every job, fed in batches.

    job threads ──► per-model queue ──► worker threads ──► worker processes
    (classify())    (image paths;       (one per process:   (spawned; load the model once,
                     batches form        send, wait, hand    stay warm; decode their batch's
                     across jobs)        back results)       files, run the model, thumbnail)

Each `classify` call runs in its caller's thread: it finds the images, keeps a bounded window
of them queued, and writes prediction files as results come back. Images from every job queue
up per model; a worker takes up to `batch_size` of them (waiting at most `max_wait_ms` for a
batch to fill), so concurrent jobs share batches. The worker processes decode the files
themselves: decoding is most of the per-image work outside the model, and done there it runs
on every core in parallel instead of contending for this process's GIL with the service, and
a decoder crash on a hostile file takes down a worker, not the service. Workers start on demand
(one at a time, up to `workers` per model), stop after `idle_s` without work, and a worker that
dies fails only the jobs whose images it held; the next one is started in its place.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from autoinfer.errors import JobStopped, ModelError
from autoinfer.gallery import MAX_ITEMS, Thumbnails
from autoinfer.predictors.classifier import prediction_paths, write_manifest, write_prediction
from autoinfer.predictors.devices import select_providers
from autoinfer.predictors.images import Preprocessing, find_images
from autoinfer.predictors.limits import DEFAULT_MAX_PIXELS, DEFAULT_WORKER_MEMORY_MB
from autoinfer.predictors.worker import Worker
from autoinfer.predictors.zoo import ModelRef, resolve_source

Progress = Callable[[int, int], None]
log = logging.getLogger("autoinfer.predictors")
#: Receives each batch of prediction records (`{"file", "classes"}` or `{"file", "error"}`).
OnItems = Callable[[list[dict[str, Any]]], None]
_POLL_S = 0.05  # how often a waiting job looks at its `cancelled` event


class PredictorPool:
    """Warm model workers, shared by concurrent `classify` calls. Thread-safe; `close()` it."""

    #: `classify` takes `thumbnails` (the runner asks before passing it).
    makes_thumbnails = True

    def __init__(
        self,
        cache_dir: Path,
        *,
        workers: int = 1,
        batch_size: int = 16,
        max_wait_ms: int = 20,
        idle_s: float = 300,
        threads_per_worker: int | None = None,
        max_image_pixels: int = DEFAULT_MAX_PIXELS,
        worker_memory_mb: int | None = DEFAULT_WORKER_MEMORY_MB,
        device: str = "cpu",
    ) -> None:
        if workers < 1 or batch_size < 1:
            raise ValueError("workers and batch_size must be at least 1")
        self.cache_dir = Path(cache_dir)
        self.workers = workers
        self.batch_size = batch_size
        self.max_wait_s = max_wait_ms / 1000
        self.idle_s = idle_s
        # What one image may cost a worker (autoinfer.predictors.limits).
        self.max_image_pixels = max_image_pixels
        self.worker_memory_mb = worker_memory_mb
        # ONNX Runtime threads per worker process; by default the cores shared out.
        self.threads_per_worker = threads_per_worker or max(1, (os.cpu_count() or 1) // workers)
        # ONNX Runtime's execution providers for `device`; a GPU asked for but absent: one line.
        self.providers, self.device_note = select_providers(device)
        if self.device_note is not None:
            log.warning("%s", self.device_note)
        self._lock = threading.Lock()
        self._models: dict[tuple[Any, ...], _Model] = {}
        self._closed = False

    def classify(
        self,
        model_source: str,
        data_dir: Path,
        output_dir: Path,
        *,
        labels_uri: str | None = None,
        progress: Progress | None = None,
        cancelled: threading.Event | None = None,
        thumbnails: Thumbnails | None = None,
        on_items: OnItems | None = None,
    ) -> dict[str, Any]:
        """Classify every image below `data_dir` into `output_dir`; return the manifest.

        Blocks until done. Undecodable images get an `error` prediction file. Raises ModelError
        when the model can't load or its worker dies holding this job's images, JobStopped
        soon after `cancelled` is set. `progress(done, total)` is called from this thread;
        `thumbnails` gets the gallery's thumbnails of the first images (`gallery.MAX_ITEMS`),
        made by the workers from the images they decode, from the worker threads;
        `on_items(records)` gets each batch of prediction records as written, from this thread.
        """
        ref = resolve_source(model_source, labels_uri)
        data_dir, output_dir = Path(data_dir), Path(output_dir)
        images = find_images(data_dir)
        job = _Job(
            images=images,
            files=[image.relative_to(data_dir).as_posix() for image in images],
            outputs=prediction_paths(images, data_dir),
            thumbnails=thumbnails,
        )
        output_dir.mkdir(parents=True, exist_ok=True)
        model = self._model(model_source, labels_uri, _fingerprint(ref))
        try:
            model.wait_ready(lambda: self._check(cancelled, job, data_dir))
            errors = self._run(job, model, output_dir, progress, cancelled, data_dir, on_items)
        finally:
            job.close()
        assert model.info is not None
        return write_manifest(output_dir, model.info, len(images), errors)

    def stats(self) -> dict[str, Any]:
        """Counters for health and metrics: worker states, batches run, images classified."""
        with self._lock:
            models = list(self._models.values())
        totals = {
            "workers_busy": 0,
            "workers_idle": 0,
            "workers_starting": 0,
            "batches_run": 0,
            "images_classified": 0,
            "images_queued": 0,
            "worker_crashes": 0,
        }
        for model in models:
            for key, value in model.stats().items():
                totals[key] += value
        return {**totals, "models": sorted({model.source for model in models if model.live()})}

    def worker_pids(self) -> list[int]:
        """Process ids of the worker processes now running (for operators and fault tests)."""
        with self._lock:
            models = list(self._models.values())
        return [pid for model in models for pid in model.pids()]

    def close(self) -> None:
        """Stop every worker process; jobs still running get ModelError. Idempotent."""
        with self._lock:
            self._closed = True
            models, self._models = list(self._models.values()), {}
        for model in models:
            model.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- one job --------------------------------------------------------------------------

    def _run(
        self,
        job: _Job,
        model: _Model,
        output_dir: Path,
        progress: Progress | None,
        cancelled: threading.Event | None,
        data_dir: Path,
        on_items: OnItems | None = None,
    ) -> int:
        """Queue the job's images for the workers, a window at a time, and write results as
        they come; returns the number of undecodable images."""
        total = len(job.images)
        window = self.batch_size * (self.workers + 1)
        submitted = done = errors = 0
        while done < total:
            self._check(cancelled, job, data_dir)
            with job.cond:
                room = min(window - job.in_flight, total - submitted)
                job.in_flight += room
            if room:
                self._submit(model, job, range(submitted, submitted + room))
            submitted += room
            with job.cond:
                if not job.results and job.error is None:
                    job.cond.wait(_POLL_S)
                results, job.results = job.results, []
                error = job.error
            if isinstance(error, ModelError):  # shared by every job of a lost batch: copy it
                raise ModelError(str(error)) from None
            if error is not None:
                raise error
            written = []
            for index, record in results:
                prediction = {"file": job.files[index], **record}
                write_prediction(output_dir, job.outputs[index], prediction)
                written.append(prediction)
                errors += "error" in record
            if written and on_items is not None:
                on_items(written)
            done += len(results)
            if results and progress is not None:
                progress(done, total)
        self._check(cancelled, job, data_dir)
        return errors

    def _submit(self, model: _Model, job: _Job, indexes: range) -> None:
        with self._lock:
            if self._closed:
                raise ModelError("the predictor pool is closed")
        # The gallery shows the first MAX_ITEMS images: only those get a thumbnail.
        wants_thumbnails = job.thumbnails is not None
        model.enqueue(
            _Item(job, index, job.images[index], wants_thumbnails and index < MAX_ITEMS)
            for index in indexes
        )

    def _check(self, cancelled: threading.Event | None, job: _Job, data_dir: Path) -> None:
        if cancelled is not None and cancelled.is_set():
            job.close()
            raise JobStopped(f"{data_dir}: stopped on request")
        if self._closed:
            raise ModelError(f"{data_dir}: the predictor pool was closed")

    def _model(self, source: str, labels_uri: str | None, fingerprint: tuple) -> _Model:
        """The model's group of workers; a replaced ONNX or labels file gets a new group."""
        with self._lock:
            if self._closed:
                raise ModelError(f"{source}: the predictor pool is closed")
            key = (source, labels_uri, fingerprint)
            if key not in self._models:
                self._models[key] = _Model(self, source, labels_uri)
            return self._models[key]


@dataclass(eq=False)
class _Job:
    """One `classify` call's shared state: what the worker threads report back."""

    images: list[Path]
    files: list[str]  # names relative to the data folder, for the prediction files
    outputs: list[str]  # prediction file paths relative to the output folder
    thumbnails: Thumbnails | None = None
    cond: threading.Condition = field(default_factory=threading.Condition)
    results: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    in_flight: int = 0  # queued or in a worker, not finished yet
    error: BaseException | None = None
    closed: bool = False  # finished, failed or stopped: its queued images are dropped

    def finish(self, index: int, record: dict[str, Any]) -> None:
        with self.cond:
            self.results.append((index, record))
            self.in_flight -= 1
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


@dataclass(eq=False)
class _Item:
    """One image of a job, queued for a worker."""

    job: _Job
    index: int
    path: Path
    thumbnail: bool  # the worker also makes its gallery thumbnail
    queued: float = field(default_factory=time.monotonic)


class _Model:
    """One model source: its queue of images and its worker processes."""

    def __init__(self, pool: PredictorPool, source: str, labels_uri: str | None) -> None:
        self.pool = pool
        self.source = source
        self.labels_uri = labels_uri
        self.cond = threading.Condition()
        self.queue: deque[_Item] = deque()
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
                self.cond.wait(_POLL_S)
                check()
            return self.preprocessing

    def enqueue(self, items: Iterable[_Item]) -> None:
        """Queue images for the workers. Starts another worker when every worker is busy and
        fewer than `workers` run."""
        with self.cond:
            self.queue.extend(items)
            live = len(self.workers)
            starting = any(worker.starting for worker in self.workers)
            if not (self.waiting or starting or self.closing) and live < self.pool.workers:
                self._start_worker()
            self.cond.notify_all()

    def take_batch(self, worker: Worker) -> list[_Item] | None:
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
                    if self.queue:
                        age = now - self.queue[0].queued
                        full = len(self.queue) >= pool.batch_size
                        if full or age >= pool.max_wait_s:
                            count = min(pool.batch_size, len(self.queue))
                            return [self.queue.popleft() for _ in range(count)]
                        self.cond.wait(pool.max_wait_s - age)
                    elif now >= idle_until:
                        self.workers.remove(worker)
                        return None
                    else:
                        self.cond.wait(idle_until - now)
                return None
            finally:
                self.waiting -= 1

    def requeue(self, items: list[_Item]) -> None:
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
            kept: deque[_Item] = deque()
            for item in self.queue:
                if item.job.closed:
                    item.job.drop()
                else:
                    kept.append(item)
            self.queue = kept


def _fingerprint(ref: ModelRef) -> tuple:
    """What identifies the files behind a model source: their size and modification time."""
    files = [path for path in (ref.path, ref.labels) if path is not None]
    return tuple((st.st_size, st.st_mtime_ns) for st in (path.stat() for path in files))
