"""The worker processes of the predictor pool: the process itself (`serve`) and the thread in
the parent that feeds it (`Worker`).

The protocol on the pipe between them is small: the process sends ("ready", info, preprocessing)
or ("error", reason) once; then for each uint8 batch (N, H, W, 3) it gets, ("ok", [top-5 per
image]) or ("error", reason). None or a closed pipe ends it. A pipe that closes while a batch is
out means the process died with that batch.

The crops themselves (150 KB each) do not go through the pipe where the system allows: after
"ready" the feeding thread sends ("buffer", shape) and then, over the pipe's socket, the
descriptor of a memory file (Linux memfd) that both processes map; each batch is then written
there and announced as ("crops", N). That saves both processes the pickling and the copies
through the kernel. Elsewhere, or when the memory can't be reserved, the arrays are sent.
"""

from __future__ import annotations

import mmap
import multiprocessing
import os
import signal
import threading
from multiprocessing import reduction
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from autoinfer.errors import AutoInferError, ModelError
from autoinfer.predictors.images import Preprocessing

if TYPE_CHECKING:
    from autoinfer.predictors.pool import _Item, _Model


class Worker:
    """One worker process and the thread in this process that feeds it, one batch at a time."""

    def __init__(self, model: _Model) -> None:
        self.model = model
        self.starting = True
        self.busy = False
        self.process: Any = None
        self.conn: Connection | None = None
        self._crops: np.ndarray | None = None  # the batch buffer shared with the process
        self._buffer: mmap.mmap | None = None
        self.thread = threading.Thread(target=self._run, name="autoinfer-predictor", daemon=True)

    def _run(self) -> None:
        model, pool = self.model, self.model.pool
        try:
            info, prep = self._spawn(pool.cache_dir, pool.threads_per_worker)
        except Exception as error:  # noqa: BLE001 - any start failure must reach the jobs
            self._kill()
            if not isinstance(error, ModelError):
                error = ModelError(f"{model.source}: cannot start a worker process: {error}")
            model.failed_to_start(self, error)
            return
        model.ready(self, info, prep)
        crashed = False
        try:
            while True:
                batch = model.take_batch(self)
                if batch is None:
                    break
                if not self.process.is_alive():  # died while idle: the batch never left
                    model.requeue(batch)
                    crashed = True
                    break
                if not self._classify(batch):
                    crashed = True
                    break
        finally:
            if not crashed:
                self._shutdown()
            self._kill()
            model.gone(self, crashed)

    def _spawn(self, cache_dir: Path, threads: int) -> tuple[dict[str, Any], Preprocessing]:
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe(duplex=True)
        args = (theirs, self.model.source, self.model.labels_uri, str(cache_dir), threads)
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
        info, prep = message[1], message[2]
        self._share_buffer((self.model.pool.batch_size, prep.size, prep.size, 3))
        return info, prep

    def _share_buffer(self, shape: tuple[int, int, int, int]) -> None:
        """Give the process a memory file to take its batches from (see the module's doc);
        without one (not Linux, memory short) batches go through the pipe."""
        assert self.conn is not None
        size = int(np.prod(shape))
        try:
            fd = os.memfd_create("autoinfer-crops", os.MFD_CLOEXEC)
        except (AttributeError, OSError):  # no memfd (not Linux): the pipe it is
            return
        try:
            try:
                os.posix_fallocate(fd, 0, size)  # reserved now: writing to it can't SIGBUS
            except OSError:  # no memory to reserve: the pipe it is
                return
            self._buffer = mmap.mmap(fd, size)
            self._crops = np.frombuffer(self._buffer, dtype=np.uint8).reshape(shape)
            self.conn.send(("buffer", shape))
            reduction.send_handle(self.conn, fd, self.process.pid)
        finally:
            os.close(fd)  # the mappings keep the memory

    def _classify(self, batch: list[_Item]) -> bool:
        """Run one batch and hand the results to its jobs; False when the worker died."""
        assert self.conn is not None
        self.busy = True
        try:
            shared = self._crops
            if shared is not None:
                np.stack([item.crop for item in batch], out=shared[: len(batch)])
                self.conn.send(("crops", len(batch)))
            else:
                self.conn.send(np.stack([item.crop for item in batch]))
            status, payload = self.conn.recv()
        except Exception as failure:  # noqa: BLE001 - a lost batch must fail its jobs
            if isinstance(failure, (EOFError, OSError)):
                self.process.join(1)
                reason = f"died (exit code {self.process.exitcode})"
            else:  # the conversation is out of step: treat the worker as lost
                reason = f"failed ({type(failure).__name__}: {failure})"
            error = ModelError(
                f"{self.model.source}: worker process {self.process.pid} {reason} "
                f"while classifying {len(batch)} images"
            )
            for item in batch:
                item.job.fail(error)
            return False
        finally:
            self.busy = False
        if status == "ok":
            for item, classes in zip(batch, payload, strict=True):
                item.job.finish(item.index, {"classes": classes})
            self.model.counted(len(batch))
        else:
            error = ModelError(f"{self.model.source}: {payload}")
            for item in batch:
                item.job.fail(error)
        return True

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
        buffer, self._buffer, self._crops = self._buffer, None, None
        if buffer is not None:
            try:
                buffer.close()
            except BufferError:
                pass  # a batch being written (stop() gave up waiting): freed with its last view


def serve(
    conn: Connection, source: str, labels_uri: str | None, cache_dir: str, threads: int
) -> None:
    """A worker process: load the model once, then answer batches until told to stop.

    Protocol on `conn`: it sends ("ready", info, preprocessing) or ("error", reason) first; then
    for each uint8 batch (N, H, W, 3) received, ("ok", [top-5 per image]) or ("error", reason);
    None or a closed pipe ends it. A batch is an array, or ("crops", N): the first N crops of the
    buffer that a ("buffer", shape) message and the descriptor after it set up.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    from autoinfer.predictors.zoo import load_classifier

    try:
        classifier = load_classifier(source, Path(cache_dir), labels_uri, threads=threads)
    except AutoInferError as error:
        conn.send(("error", str(error)))
        return
    except Exception as error:  # noqa: BLE001 - reported to the parent, which raises it
        conn.send(("error", f"{source}: {type(error).__name__}: {error}"))
        return
    conn.send(("ready", classifier.info, classifier.preprocessing))
    shared: np.ndarray | None = None  # the batch buffer, once the parent has sent it
    while True:
        try:
            message = conn.recv()
            if isinstance(message, tuple) and message[0] == "buffer":
                shared = _map_buffer(reduction.recv_handle(conn), message[1])
                continue
        except (EOFError, OSError):
            return
        if message is None:
            return
        try:
            if isinstance(message, tuple):  # ("crops", n)
                assert shared is not None, "crops announced before the buffer"
                batch = shared[: message[1]]
            else:
                batch = message
            probs = classifier.predict_crops(batch)
            conn.send(("ok", [classifier.top5(row) for row in probs]))
        except Exception as error:  # noqa: BLE001 - reported to the parent, which raises it
            conn.send(("error", f"{type(error).__name__}: {error}"))


def _map_buffer(fd: int, shape: tuple[int, ...]) -> np.ndarray:
    """The parent's batch buffer (a memory file received as `fd`) as a uint8 array."""
    try:
        buffer = mmap.mmap(fd, int(np.prod(shape)))
    finally:
        os.close(fd)
    return np.frombuffer(buffer, dtype=np.uint8).reshape(shape)
