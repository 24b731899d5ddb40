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

A model has a worker group per device (`Placement`): the CPU group, and the CUDA group that jobs
asking for a GPU use (`classify(device="cuda")`; `predictors.device: cuda` makes it every job's).
The CUDA group has one worker process on GPU `cuda_device` that decodes on `decode_threads`
threads and is sent the next batch while it runs one, so the GPU is not left waiting for decode.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any, Self

from autoinfer.errors import JobStopped, ModelError
from autoinfer.gallery import MAX_ITEMS, Thumbnails
from autoinfer.predictors.devices import cuda_environment, select_providers
from autoinfer.predictors.limits import DEFAULT_MAX_PIXELS, DEFAULT_WORKER_MEMORY_MB
from autoinfer.predictors.prediction_writer import OnItems, PredictionWriter, Progress
from autoinfer.predictors.worker_group import ModelWorkers, Placement, QueuedImage, QueuedJob
from autoinfer.predictors.zoo import ModelRef, resolve_source

log = logging.getLogger("autoinfer.predictors")

#: How long a job waits for results before looking at its `cancelled` event again (results
#: wake it at once). Each look costs this process CPU: 16 queued jobs polling every 50 ms cost
#: more than a millisecond per job.
RESULT_WAIT_S = 0.25


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
        cuda_device: int = 0,
        decode_threads: int | None = None,
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
        self.device = device
        self.providers, self.device_note = select_providers(device)
        if self.device_note is not None:
            log.warning("%s", self.device_note)
        # The CUDA group: the GPU its worker sees, and its decode threads (default: one per
        # core, at least 2 so that the next batch decodes while the GPU runs one, at most 16).
        self.cuda_device = cuda_device
        self.decode_threads = decode_threads or max(2, min(16, os.cpu_count() or 1))
        self._placements: dict[str, Placement] = {}
        self._lock = threading.Lock()
        self._models: dict[tuple[Any, ...], ModelWorkers] = {}
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
        device: str | None = None,
    ) -> dict[str, Any]:
        """Classify every image below `data_dir` into `output_dir`; return the manifest.

        Blocks until done. Undecodable images get an `error` prediction file. Raises ModelError
        when the model can't load or its worker dies holding this job's images, JobStopped
        soon after `cancelled` is set. `progress(done, total)` is called from this thread;
        `thumbnails` gets the gallery's thumbnails of the first images (`gallery.MAX_ITEMS`),
        made by the workers from the images they decode, from the worker threads;
        `on_items(records)` gets each batch of prediction records as written, from this thread.
        `device` ("cpu" or "cuda"; None: the pool's) picks the model's worker group; "cuda"
        where there is no usable GPU runs on the CPU group (the caller decides whether a job
        may: `devices.job_device`).
        """
        ref = resolve_source(model_source, labels_uri)
        writer = PredictionWriter(data_dir, output_dir, progress=progress, on_items=on_items)
        job = QueuedJob(images=writer.images, files=writer.files, thumbnails=thumbnails)
        model = self._model(model_source, labels_uri, _fingerprint(ref), self.placement(device))
        try:
            model.wait_ready(lambda: self._check(cancelled, job, writer.data_dir))
            self._run(job, model, writer, cancelled)
        finally:
            job.close()
        assert model.info is not None
        return writer.manifest(model.info)

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

    def groups(self) -> list[tuple[str, str]]:
        """(model source, device) of each worker group with live workers."""
        with self._lock:
            models = list(self._models.values())
        return [(model.source, model.placement.device) for model in models if model.live()]

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
        job: QueuedJob,
        model: ModelWorkers,
        writer: PredictionWriter,
        cancelled: threading.Event | None,
    ) -> None:
        """Queue the job's images for the workers, a window at a time, and write results as
        they come."""
        total = writer.total
        placement = model.placement
        window = self.batch_size * (placement.workers * placement.in_flight + 1)
        submitted = 0
        while writer.done < total:
            self._check(cancelled, job, writer.data_dir)
            with job.cond:
                room = min(window - job.in_flight, total - submitted)
                job.in_flight += room
            if room:
                self._submit(model, job, range(submitted, submitted + room))
            submitted += room
            with job.cond:
                if not job.results and job.error is None:
                    job.cond.wait(RESULT_WAIT_S)
                results, job.results = job.results, []
                error = job.error
            if isinstance(error, ModelError):  # shared by every job of a lost batch: copy it
                raise ModelError(str(error)) from None
            if error is not None:
                raise error
            writer.write(results)
        self._check(cancelled, job, writer.data_dir)

    def _submit(self, model: ModelWorkers, job: QueuedJob, indexes: range) -> None:
        with self._lock:
            if self._closed:
                raise ModelError("the predictor pool is closed")
        # The gallery shows the first MAX_ITEMS images: only those get a thumbnail.
        wants_thumbnails = job.thumbnails is not None
        model.enqueue(
            QueuedImage(job, index, job.images[index], wants_thumbnails and index < MAX_ITEMS)
            for index in indexes
        )

    def _check(self, cancelled: threading.Event | None, job: QueuedJob, data_dir: Path) -> None:
        if cancelled is not None and cancelled.is_set():
            job.close()
            raise JobStopped(f"{data_dir}: stopped on request")
        if self._closed:
            raise ModelError(f"{data_dir}: the predictor pool was closed")

    def placement(self, device: str | None = None) -> Placement:
        """Where `device`'s worker groups run ("cuda" without a usable GPU: the CPU's)."""
        wanted = device or self.device
        with self._lock:
            if wanted not in self._placements:
                self._placements[wanted] = self._place(wanted)
            return self._placements[wanted]

    def _place(self, device: str) -> Placement:
        providers = self.providers if device == self.device else select_providers(device)[0]
        if providers[0] != "CUDAExecutionProvider":
            return Placement("cpu", tuple(providers), self.workers, self.threads_per_worker)
        return Placement(
            "cuda",
            tuple(providers),
            workers=1,  # one GPU: one process, fed by its decode threads
            ort_threads=1,  # the cores are the decode threads'
            decode_threads=self.decode_threads,
            in_flight=2,
            environment=tuple(cuda_environment(self.cuda_device).items()),
        )

    def _model(
        self, source: str, labels_uri: str | None, fingerprint: tuple, placement: Placement
    ) -> ModelWorkers:
        """The model's group of workers on `placement`'s device; a replaced ONNX or labels file
        gets a new group."""
        with self._lock:
            if self._closed:
                raise ModelError(f"{source}: the predictor pool is closed")
            key = (source, labels_uri, fingerprint, placement.device)
            if key not in self._models:
                self._models[key] = ModelWorkers(self, source, labels_uri, placement)
            return self._models[key]


def _fingerprint(ref: ModelRef) -> tuple:
    """What identifies the files behind a model source: their size and modification time."""
    files = [path for path in (ref.path, ref.labels) if path is not None]
    return tuple((st.st_size, st.st_mtime_ns) for st in (path.stat() for path in files))
