"""The worker processes of the predictor pool: the process itself (`serve`) and the thread in
the parent that feeds it (`Worker`).

The protocol on the pipe between them is small: the process sends ("ready", info, preprocessing)
or ("error", reason) once; then for each batch of image paths it gets, ("ok", [(record,
thumbnail), ...]) with a record per image ({"classes": top-5} or {"error": why it could not be
decoded}) and the JPEG bytes of its gallery thumbnail when one was asked for, or ("error",
reason) when the model itself failed, answered in the order sent. None or a closed pipe ends
it. A pipe that closes while a batch is out means the process died with that batch. A CUDA
worker is sent its next batch while it runs one (two in flight), so that it decodes the next on
its threads meanwhile (`decode_stage`); a CPU worker gets one at a time.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from collections import deque
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autoinfer.errors import AutoInferError, ModelError
from autoinfer.predictors.decode_stage import DecodeStage, run_model, serve_pipelined
from autoinfer.predictors.images import Preprocessing
from autoinfer.predictors.limits import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_WORKER_MEMORY_MB,
    limit_worker,
)

if TYPE_CHECKING:
    from autoinfer.predictors.classifier import Classifier
    from autoinfer.predictors.worker_group import ModelWorkers, QueuedImage, QueuedJob


class Worker:
    """One worker process and the thread in this process that feeds it batches."""

    def __init__(self, model: ModelWorkers) -> None:
        self.model = model
        self.starting = True
        self.busy = False
        self.process: Any = None
        self.conn: Connection | None = None
        self.thread = threading.Thread(target=self._run, name="autoinfer-predictor", daemon=True)

    def _run(self) -> None:
        model, pool = self.model, self.model.pool
        try:
            info, prep = self._spawn(pool.cache_dir)
        except Exception as error:  # noqa: BLE001 - any start failure must reach the jobs
            self._kill()
            if not isinstance(error, ModelError):
                error = ModelError(f"{model.source}: cannot start a worker process: {error}")
            model.failed_to_start(self, error)
            return
        model.ready(self, info, prep)
        # Batches sent and not answered yet, oldest first: a pipelined (CUDA) worker gets the
        # next batch while it runs one (`placement.in_flight`), a CPU worker one at a time.
        pending: deque[list[QueuedImage]] = deque()
        crashed = False
        try:
            while True:
                if not pending:
                    batch = model.take_batch(self)
                    if batch is None:
                        break
                    if not self.process.is_alive():  # died while idle: the batch never left
                        model.requeue(batch)
                        crashed = True
                        break
                    if not self._send(batch, pending):
                        crashed = True
                        break
                while len(pending) < model.placement.in_flight:
                    more = model.take_ready()
                    if more is None:
                        break
                    if not self._send(more, pending):
                        crashed = True
                        break
                if crashed or not self._receive(pending):
                    crashed = True
                    break
        finally:
            if not crashed:
                self._shutdown()
            self._kill()
            model.gone(self, crashed)

    def _spawn(self, cache_dir: Path) -> tuple[dict[str, Any], Preprocessing]:
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe(duplex=True)
        pool, placement = self.model.pool, self.model.placement
        limits = (pool.max_image_pixels, pool.worker_memory_mb)
        args = (
            theirs,
            self.model.source,
            self.model.labels_uri,
            str(cache_dir),
            placement.ort_threads,
            *limits,
            list(placement.providers),
            placement.decode_threads,
            dict(placement.environment),
        )
        self.process = context.Process(
            target=serve, args=args, name="autoinfer-predictor", daemon=True
        )
        self.process.start()
        theirs.close()  # so that our end reads EOF when the process dies
        self.conn = ours
        try:
            message = ours.recv()
        except (EOFError, OSError):
            self.process.join(5)
            code = self.process.exitcode
            raise ModelError(
                f"{self.model.source}: worker process exited while loading (exit code {code})"
            ) from None
        if message[0] == "error":
            raise ModelError(message[1])
        return message[1], message[2]

    def _send(self, batch: list[QueuedImage], pending: deque[list[QueuedImage]]) -> bool:
        """Send one batch to the process; False (its jobs and those of `pending` failed) when
        the worker is lost."""
        assert self.conn is not None
        self.busy = True
        pending.append(batch)
        try:
            self.conn.send(([str(item.path) for item in batch], [i.thumbnail for i in batch]))
        except Exception as failure:  # noqa: BLE001 - a lost batch must fail its jobs
            self._lost(failure, pending)
            return False
        return True

    def _receive(self, pending: deque[list[QueuedImage]]) -> bool:
        """Wait for the oldest batch's results and hand them to its jobs; False when the worker
        died (the jobs of every batch it held are failed)."""
        assert self.conn is not None
        try:
            status, payload = self.conn.recv()
        except Exception as failure:  # noqa: BLE001 - a lost batch must fail its jobs
            self._lost(failure, pending)
            return False
        batch = pending.popleft()
        self.busy = bool(pending)
        if status == "ok":
            self.model.counted(len(batch))  # before a job can see its results (and stats)
            # Each job gets its share of the batch at once: one wake-up of its thread, one
            # write of its prediction files, not one per image.
            shares: dict[QueuedJob, list[tuple[int, dict[str, Any]]]] = {}
            for item, (record, thumbnail) in zip(batch, payload, strict=True):
                if thumbnail is not None and item.job.thumbnails is not None:
                    item.job.thumbnails.add(item.job.files[item.index], thumbnail)
                shares.setdefault(item.job, []).append((item.index, record))
            for job, results in shares.items():
                job.finish_many(results)
        else:
            error = ModelError(f"{self.model.source}: {payload}")
            for item in batch:
                item.job.fail(error)
        return True

    def _lost(self, failure: Exception, pending: deque[list[QueuedImage]]) -> None:
        if isinstance(failure, (EOFError, OSError)):
            self.process.join(1)
            reason = f"died (exit code {self.process.exitcode})"
        else:  # the conversation is out of step: treat the worker as lost
            reason = f"failed ({type(failure).__name__}: {failure})"
        held = [item for batch in pending for item in batch]
        pending.clear()
        self.busy = False
        error = ModelError(
            f"{self.model.source}: worker process {self.process.pid} {reason} "
            f"while classifying {len(held)} images"
        )
        for item in held:
            item.job.fail(error)

    def stop(self) -> None:
        """Ask the process to exit (the thread sees `closing`) and wait for the thread."""
        if self.thread.is_alive() and self.thread is not threading.current_thread():
            self.thread.join(10)
        self._kill()

    def _shutdown(self) -> None:
        try:
            if self.conn is not None:
                self.conn.send(None)
        except OSError:
            pass  # already gone: _kill reaps it
        if self.process is not None:
            self.process.join(5)

    def _kill(self) -> None:
        if self.process is not None and self.process.is_alive():
            self.process.kill()
            self.process.join(5)
        if self.conn is not None:
            self.conn.close()


def serve(
    conn: Connection,
    source: str,
    labels_uri: str | None,
    cache_dir: str,
    threads: int,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    memory_mb: int | None = DEFAULT_WORKER_MEMORY_MB,
    providers: list[str] | None = None,
    decode_threads: int = 1,
    environment: dict[str, str] | None = None,
) -> None:
    """A worker process: load the model once (on ONNX Runtime's `providers`, default CPU, with
    `environment` set first: a CUDA worker's CUDA_VISIBLE_DEVICES), then answer batches until
    told to stop. With `decode_threads` > 1 it decodes on that many threads and takes the next
    batch while the model runs this one (`decode_stage.serve_pipelined`).

    Protocol on `conn`: it sends ("ready", info, preprocessing) or ("error", reason) first; then
    for each batch (paths, wants_thumbnail flags) received, ("ok", [(record, thumbnail jpeg or
    None) per image]) or ("error", reason); None or a closed pipe ends it.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    os.environ.update(environment or {})  # before ONNX Runtime initialises CUDA
    from autoinfer.predictors.zoo import load_classifier

    try:
        classifier = load_classifier(
            source, Path(cache_dir), labels_uri, threads=threads, providers=providers
        )
    except AutoInferError as error:
        conn.send(("error", str(error)))
        return
    except Exception as error:  # noqa: BLE001 - reported to the parent, which raises it
        conn.send(("error", f"{source}: {type(error).__name__}: {error}"))
        return
    wanted = (providers or ["CPUExecutionProvider"])[0]
    if wanted not in classifier.session.get_providers():  # ORT fell back (CUDA libraries?)
        seen = os.environ.get("CUDA_VISIBLE_DEVICES", "all")
        reason = (
            f"{source}: ONNX Runtime could not start its {wanted} (GPU {seen}): are CUDA and "
            "cuDNN of the versions onnxruntime-gpu needs installed?"
        )
        conn.send(("error", reason))
        return
    # Once the model is loaded (an export may need more): one image cannot take the batch
    # down with it.
    limit_worker(max_pixels, memory_mb)
    conn.send(("ready", classifier.info, classifier.preprocessing))
    if decode_threads > 1:
        stage = DecodeStage(classifier.preprocessing, decode_threads, max_pixels=max_pixels)
        try:
            serve_pipelined(conn, classifier, stage)
        finally:
            stage.close()
        return
    while True:
        try:
            batch = conn.recv()
        except (EOFError, OSError):
            return
        if batch is None:
            return
        try:
            conn.send(("ok", classify_files(classifier, *batch, max_pixels=max_pixels)))
        except Exception as error:  # noqa: BLE001 - reported to the parent, which raises it
            conn.send(("error", f"{type(error).__name__}: {error}"))


def classify_files(
    classifier: Classifier,
    paths: Sequence[str],
    thumbnails: Sequence[bool],
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> list[tuple[dict[str, Any], bytes | None]]:
    """Decode the files, run the decodable ones through the model as one batch; per file its
    prediction record and, where asked for, its gallery thumbnail (JPEG bytes)."""
    stage = DecodeStage(classifier.preprocessing, max_pixels=max_pixels)
    return run_model(classifier, stage.decode(paths, thumbnails))
