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

import functools
import logging
import threading
import time
from collections import deque
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
from autoinfer.predictors.images import Preprocessing, UnreadableImage, decode_image
from autoinfer.predictors.model_server import ModelServer
from autoinfer.predictors.prediction_writer import OnItems, PredictionWriter, Progress
from autoinfer.text import one_line

log = logging.getLogger("autoinfer.predictors.ray")
_POLL_S = 0.1  # how often a waiting job looks at its `cancelled` event
CUDA_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")


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
        on_items: OnItems | None = None,
    ) -> dict[str, Any]:
        """Classify every image below `data_dir` into `output_dir`; return the manifest.

        Same contract as `PredictorPool.classify`: undecodable images get an `error` file,
        ModelError when the model can't load or its actor dies holding this job's images,
        JobStopped soon after `cancelled` is set; `thumbnails(file, image)` is called from the
        decode threads with each decodable image as decoded for the model."""
        if (model_source, labels_uri) != (self.source, self.labels_uri):
            raise ModelError(f"{model_source}: these actors serve {self.source}")
        writer = PredictionWriter(data_dir, output_dir, progress=progress, on_items=on_items)
        images, files = writer.images, writer.files
        stop = _Stop(cancelled, writer.data_dir)
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
        try:
            for number, chunk in enumerate(chunks):
                actor = self.actors[number % len(self.actors)]
                sent = decoder.submit(_send, actor, images, chunk, prep, stop, thumbnails, files)
                pending.append((chunk, sent))
                while len(pending) >= window or (pending and number == len(chunks) - 1):
                    _, future = pending.popleft()
                    decoded, failed, ref = stop.result(future)
                    results: list[tuple[int, dict[str, Any]]] = [
                        (index, {"error": reason}) for index, reason in failed
                    ]
                    if ref is not None:
                        top = self._get(ref, stop)
                        results += [
                            (index, {"classes": classes})
                            for index, classes in zip(decoded, top, strict=True)
                        ]
                    writer.write(results)
        finally:
            stop.closed = True
            decoder.shutdown(wait=False, cancel_futures=True)
        stop.check()
        return writer.manifest(info)

    def _get(self, ref: Any, stop: _Stop) -> Any:
        """The value of an actor call, waiting in small steps so a stop is seen."""
        while not ray.wait([ref], timeout=_POLL_S)[0]:
            stop.check()
        try:
            return ray.get(ref)
        except RayTaskError as error:
            cause = error.cause if isinstance(error.cause, AutoInferError) else None
            raise ModelError(
                str(cause) if cause else f"{self.source}: {one_line(str(error), 300)}"
            ) from None
        except RayActorError as error:
            raise ModelError(
                f"{self.source}: its model actor died while classifying ({one_line(str(error), 300)})"
            ) from None
        except RayError as error:
            raise ModelError(f"{self.source}: {one_line(str(error), 300)}") from None


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
