"""`ModelServer`: one built-in model loaded once in a Ray actor, answering `predict` calls in
batches merged from every job's chunks (waiting at most `max_wait_ms` for a batch to fill, as
the local workers do). `predictors.ray_pool` creates and feeds these actors.
"""

from __future__ import annotations

import asyncio
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from autoinfer.errors import AutoInferError, ModelError

log = logging.getLogger("autoinfer.predictors.ray")


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
