"""Built-in models on a Ray cluster: actors that keep a model loaded, fed in batches, shared by
every job — the cluster's counterpart of the local warm workers (`predictors.pool`).

    service (RayPredictorPool)          job's Ray task (ModelActors.classify)     model actor
    creates and owns the actors,  ──►   finds and decodes the images on its  ──►  (ModelServer)
    hands each job a ModelActors        node, sends crops in chunks, writes        merges chunks
                                        prediction files as results return         from all jobs

A job decodes its images on its own node and sends them in chunks of `batch_size`, spread over
the actors; an actor merges what reaches it from every job into batches of up to `batch_size`
crops, waiting at most `max_wait_ms` for a batch to fill, as the local workers do. The
classifier, preprocessing and prediction files are those of `predictors.classifier`/`images`.
An actor that dies is restarted by Ray (the model loads again); the chunks it held fail their
jobs with a ModelError, as a dead local worker does.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from autoinfer.errors import AutoInferError, ConfigError, JobStopped, ModelError

try:
    import ray
    from ray.exceptions import RayActorError, RayError, RayTaskError
except ImportError:  # an optional extra
    raise ConfigError("Ray is not installed here; pip install 'autoinfer[ray]'") from None
from autoinfer.gallery import Thumbnails
from autoinfer.predictors.classifier import prediction_paths, write_manifest, write_prediction
from autoinfer.predictors.images import Preprocessing, UnreadableImage, decode_image, find_images

log = logging.getLogger("autoinfer.predictors.ray")
Progress = Callable[[int, int], None]
_POLL_S = 0.1  # how often a waiting job looks at its `cancelled` event
CUDA_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")


class ModelServer:
    """One model, loaded once, answering `predict` calls in batches. Run as a Ray actor
    (async: calls from many jobs wait together while the model runs in a thread)."""

    def __init__(
        self,
        source: str,
        labels_uri: str | None,
        cache_dir: str | None,
        *,
        threads: int | None = None,
        share: int = 1,
        batch_size: int = 16,
        max_wait_ms: int = 20,
        providers: tuple[str, ...] | None = None,
    ) -> None:
        """`threads`: ONNX Runtime's threads; None: the node's cores shared out among `share`
        actors (the model's actors, as the local pool shares them among its workers)."""
        self.source, self.labels_uri = source, labels_uri
        self.cache_dir = cache_dir
        self.threads = threads or max(1, (os.cpu_count() or 1) // share)
        self.batch_size, self.max_wait_s = batch_size, max_wait_ms / 1000
        self.providers = providers
        self.classifier: Any = None
        self.batches = self.images = 0
        self._load_lock: asyncio.Lock | None = None
        self._queue: asyncio.Queue[tuple[np.ndarray, asyncio.Future]] | None = None
        self._batcher: asyncio.Task | None = None
        self._model_thread = ThreadPoolExecutor(1, "autoinfer-model")

    async def describe(self) -> dict[str, Any]:
        """Load the model if not loaded yet; `{"info", "preprocessing"}` or `{"error": reason}`
        (a failed load is tried again on the next call, so a fixed model file is picked up)."""
        if self._load_lock is None:
            self._load_lock = asyncio.Lock()
        async with self._load_lock:
            if self.classifier is None:
                loop = asyncio.get_running_loop()
                try:
                    self.classifier = await loop.run_in_executor(self._model_thread, self._load)
                except AutoInferError as error:
                    return {"error": str(error)}
                except Exception as error:  # noqa: BLE001 - reported to the job, which fails
                    return {"error": f"{self.source}: {type(error).__name__}: {error}"}
        return {"info": self.classifier.info, "preprocessing": self.classifier.preprocessing}

    async def predict(self, crops: np.ndarray) -> list[list[dict[str, Any]]]:
        """The top-5 classes of each uint8 crop (N, H, W, 3), batched with other callers'."""
        if self.classifier is None:
            described = await self.describe()
            if "error" in described:
                raise ModelError(described["error"])
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._batcher = asyncio.get_running_loop().create_task(self._run_batches())
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        await self._queue.put((crops, future))
        return await future

    async def stats(self) -> dict[str, int]:
        return {"batches_run": self.batches, "images_classified": self.images}

    def _load(self) -> Any:
        from autoinfer.predictors.__main__ import default_cache_dir
        from autoinfer.predictors.zoo import load_classifier

        cache = default_cache_dir()
        if self.cache_dir:
            try:  # the service's cache folder, where this node has it or may create it
                Path(self.cache_dir).mkdir(parents=True, exist_ok=True)
                cache = Path(self.cache_dir)
            except OSError:
                log.warning("%s: cannot use it on this node; using %s", self.cache_dir, cache)
        return load_classifier(
            self.source, cache, self.labels_uri, threads=self.threads, providers=self.providers
        )

    async def _run_batches(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            waiting = [await self._queue.get()]
            count = len(waiting[0][0])
            deadline = loop.time() + self.max_wait_s
            while count < self.batch_size:
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    waiting.append(await asyncio.wait_for(self._queue.get(), left))
                except TimeoutError:
                    break
                count += len(waiting[-1][0])
            crops = np.concatenate([chunk for chunk, _ in waiting])
            try:
                top = await loop.run_in_executor(self._model_thread, self._top5, crops)
            except Exception as error:  # noqa: BLE001 - every caller of the batch gets it
                failure = ModelError(f"{self.source}: {type(error).__name__}: {error}")
                for _, future in waiting:
                    if not future.done():
                        future.set_exception(failure)
                continue
            start = 0
            for chunk, future in waiting:
                if not future.done():
                    future.set_result(top[start : start + len(chunk)])
                start += len(chunk)

    def _top5(self, crops: np.ndarray) -> list[list[dict[str, Any]]]:
        """Run `crops` through the model `batch_size` at a time (a merged batch may be larger)."""
        top: list[list[dict[str, Any]]] = []
        for start in range(0, len(crops), self.batch_size):
            probs = self.classifier.predict_crops(crops[start : start + self.batch_size])
            top.extend(self.classifier.top5(row) for row in probs)
            self.batches += 1
        self.images += len(crops)
        return top


@dataclass
class ModelActors:
    """A model's actors as a job sees them: what the Runner calls `classify` on (the
    `runner.Predictors` interface). Picklable: it travels with the job's Ray task."""

    #: `classify` takes `thumbnails` (the runner asks before passing it).
    makes_thumbnails: ClassVar[bool] = True

    source: str
    labels_uri: str | None
    actors: list[Any]  # ActorHandle[ModelServer]
    batch_size: int = 16
    decode_threads: int = 2

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
        on_items: Callable[[list[dict[str, Any]]], None] | None = None,
    ) -> dict[str, Any]:
        """Classify every image below `data_dir` into `output_dir`; return the manifest.

        Same contract as `PredictorPool.classify`: undecodable images get an `error` file,
        ModelError when the model can't load or its actor dies holding this job's images,
        JobStopped soon after `cancelled` is set; `thumbnails(file, image)` is called from the
        decode threads with each decodable image as decoded for the model."""
        if (model_source, labels_uri) != (self.source, self.labels_uri):
            raise ModelError(f"{model_source}: these actors serve {self.source}")
        data_dir, output_dir = Path(data_dir), Path(output_dir)
        images = find_images(data_dir)
        files = [image.relative_to(data_dir).as_posix() for image in images]
        outputs = prediction_paths(images, data_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        stop = _Stop(cancelled, data_dir)
        described = self._get(self.actors[0].describe.remote(), stop)
        if "error" in described:
            raise ModelError(described["error"])
        info, prep = described["info"], described["preprocessing"]
        size = self.batch_size  # a full batch per chunk: the actor runs it without waiting
        chunks = [
            range(start, min(start + size, len(images))) for start in range(0, len(images), size)
        ]
        window = self.decode_threads + 2 * len(self.actors)
        decoder = ThreadPoolExecutor(self.decode_threads, "autoinfer-decode")
        pending: deque[tuple[range, Future]] = deque()
        done = errors = 0
        try:
            for number, chunk in enumerate(chunks):
                actor = self.actors[number % len(self.actors)]
                sent = decoder.submit(_send, actor, images, chunk, prep, stop, thumbnails, files)
                pending.append((chunk, sent))
                while len(pending) >= window or (pending and number == len(chunks) - 1):
                    chunk_done, future = pending.popleft()
                    decoded, failed, ref = stop.result(future)
                    written: list[dict[str, Any]] = []
                    for index, reason in failed:
                        record = {"file": files[index], "error": reason}
                        write_prediction(output_dir, outputs[index], record)
                        written.append(record)
                    errors += len(failed)
                    if ref is not None:
                        for index, classes in zip(decoded, self._get(ref, stop), strict=True):
                            record = {"file": files[index], "classes": classes}
                            write_prediction(output_dir, outputs[index], record)
                            written.append(record)
                    if written and on_items is not None:
                        on_items(written)
                    done += len(chunk_done)
                    if progress is not None:
                        progress(done, len(images))
        finally:
            stop.closed = True
            decoder.shutdown(wait=False, cancel_futures=True)
        stop.check()
        return write_manifest(output_dir, info, len(images), errors)

    def _get(self, ref: Any, stop: _Stop) -> Any:
        """The value of an actor call, waiting in small steps so a stop is seen."""
        while not ray.wait([ref], timeout=_POLL_S)[0]:
            stop.check()
        try:
            return ray.get(ref)
        except RayTaskError as error:
            cause = error.cause if isinstance(error.cause, AutoInferError) else None
            raise ModelError(
                str(cause) if cause else f"{self.source}: {_one_line(error)}"
            ) from None
        except RayActorError as error:
            raise ModelError(
                f"{self.source}: its model actor died while classifying ({_one_line(error)})"
            ) from None
        except RayError as error:
            raise ModelError(f"{self.source}: {_one_line(error)}") from None


@dataclass(eq=False)
class _Stop:
    """A job's `cancelled` event, seen from its decode threads and its waits."""

    cancelled: threading.Event | None
    data_dir: Path
    closed: bool = False  # the job ended: decode threads drop what is left

    def check(self) -> None:
        if self.cancelled is not None and self.cancelled.is_set():
            raise JobStopped(f"{self.data_dir}: stopped on request")

    def result(self, future: Future) -> Any:
        while True:
            self.check()
            try:
                return future.result(timeout=_POLL_S)
            except TimeoutError:
                continue


def _send(
    actor: Any,
    images: list[Path],
    chunk: range,
    prep: Preprocessing,
    stop: _Stop,
    thumbnails: Thumbnails | None,
    files: list[str],
) -> tuple[list[int], list[tuple[int, str]], Any]:
    """Runs in a decode thread: decode a chunk and send it to `actor`; (decoded indexes,
    undecodable (index, reason) pairs, the call's ObjectRef or None)."""
    crops, decoded, failed = [], [], []
    for index in chunk:
        if stop.closed:
            return [], [], None
        on_resized = functools.partial(thumbnails, files[index]) if thumbnails else None
        try:
            crops.append(decode_image(images[index], prep.size, prep.resize, on_resized=on_resized))
            decoded.append(index)
        except UnreadableImage as error:
            failed.append((index, error.reason))
    ref = actor.predict.remote(np.stack(crops)) if crops else None
    return decoded, failed, ref


@dataclass
class _Group:
    actors: ModelActors
    users: int = 0
    idle_since: float = field(default_factory=time.monotonic)


class RayPredictorPool:
    """The service's model actors on the cluster, one group per model (and GPU type), created
    on first use, owned by this process and removed after `idle_s` without jobs.

    CPU actors reserve `num_cpus` (default 0: like the local warm workers, they are shared by
    jobs and not counted against the jobs' `cpu_count`, so model actors can never be starved
    by the jobs waiting for them); GPU actors reserve one GPU each. Thread-safe; `close()` it."""

    def __init__(
        self,
        *,
        cache_dir: Path | str | None = None,
        actors: int = 1,
        batch_size: int = 16,
        max_wait_ms: int = 20,
        threads: int | None = None,
        num_cpus: float = 0.0,
        decode_threads: int = 2,
        idle_s: float = 300.0,
    ) -> None:
        if actors < 1 or batch_size < 1 or decode_threads < 1:
            raise ValueError("actors, batch_size and decode_threads must be at least 1")
        self.cache_dir = str(cache_dir) if cache_dir else None  # None: each node's default
        self.actors = actors
        self.batch_size = batch_size
        self.max_wait_ms = max_wait_ms
        self.threads = threads
        self.num_cpus = num_cpus
        self.decode_threads = decode_threads
        self.idle_s = idle_s
        self._groups: dict[tuple[Any, ...], _Group] = {}
        self._lock = threading.Lock()

    def acquire(
        self,
        source: str,
        labels_uri: str | None = None,
        *,
        gpu_count: int = 0,
        accelerator_type: str | None = None,
    ) -> ModelActors:
        """The model's actors for one job, started (loading in the background) if none run;
        pair with `release`."""
        key = (source, labels_uri, bool(gpu_count), accelerator_type if gpu_count else None)
        with self._lock:
            group = self._groups.get(key)
            if group is None:
                group = _Group(self._start(source, labels_uri, gpu_count, accelerator_type))
                self._groups[key] = group
            group.users += 1
            return group.actors

    def release(self, actors: ModelActors) -> None:
        """A job is done with `actors` (what `acquire` gave, or a copy with other settings)."""
        with self._lock:
            for group in self._groups.values():
                if group.actors.actors is actors.actors:
                    group.users = max(0, group.users - 1)
                    group.idle_since = time.monotonic()

    def reap_idle(self) -> int:
        """Remove the groups unused for `idle_s`; how many were removed."""
        now = time.monotonic()
        with self._lock:
            idle = [
                k
                for k, g in self._groups.items()
                if not g.users and now - g.idle_since > self.idle_s
            ]
            removed = [self._groups.pop(key) for key in idle]
        for group in removed:
            _kill(group.actors.actors)
        return len(removed)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "model_groups": len(self._groups),
                "model_actors": sum(len(g.actors.actors) for g in self._groups.values()),
            }

    def close(self) -> None:
        """Kill every model actor. Idempotent."""
        with self._lock:
            groups, self._groups = list(self._groups.values()), {}
        for group in groups:
            _kill(group.actors.actors)

    def _start(
        self, source: str, labels_uri: str | None, gpu_count: int, accelerator_type: str | None
    ) -> ModelActors:
        options: dict[str, Any] = {
            "num_cpus": self.num_cpus,
            "max_restarts": -1,
            "max_task_retries": 0,
        }
        providers = None
        if gpu_count:
            options["num_gpus"] = 1
            if accelerator_type:
                options["accelerator_type"] = accelerator_type
            providers = CUDA_PROVIDERS
        remote = ray.remote(ModelServer).options(**options)
        handles: list[Any] = [
            remote.remote(
                source,
                labels_uri,
                self.cache_dir,
                threads=self.threads,
                share=self.actors,
                batch_size=self.batch_size,
                max_wait_ms=self.max_wait_ms,
                providers=providers,
            )
            for _ in range(self.actors)
        ]
        for handle in handles:
            handle.describe.remote()  # start loading the model now, not at the first batch
        return ModelActors(source, labels_uri, handles, self.batch_size, self.decode_threads)


def _kill(actors: list[Any]) -> None:
    for actor in actors:
        try:
            ray.kill(actor, no_restart=True)
        except RayError as error:  # already gone
            log.debug("model actor already gone: %s", error)


def _one_line(error: BaseException, limit: int = 300) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
