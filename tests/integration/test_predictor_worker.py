"""A predictor worker process takes its batches through the pipe or from the shared buffer,
and predicts the same either way: what the classifier predicts in this process."""

from __future__ import annotations

import mmap
import multiprocessing
import os
from collections.abc import Iterator
from multiprocessing import reduction
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from autoinfer.predictors import PredictorPool, classify_folder, load_classifier
from autoinfer.predictors.images import decode_image
from autoinfer.predictors.worker import serve
from tests.conftest import SEED_TRUTH

SEEDS = sorted(SEED_TRUTH)


@pytest.fixture
def worker(model_cache: Path) -> Iterator[tuple[Connection, Any]]:
    """A worker process serving the built-in model, and our end of its pipe (after "ready")."""
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe(duplex=True)
    args = (theirs, "efficientnet_lite0", None, str(model_cache), 1)
    process = context.Process(target=serve, args=args, daemon=True)
    process.start()
    theirs.close()
    try:
        assert ours.recv()[0] == "ready"
        yield ours, process
        ours.send(None)
        process.join(10)
        assert process.exitcode == 0
    finally:
        if process.is_alive():
            process.kill()
        ours.close()


@pytest.fixture
def seed_crops(seed_images: Path) -> np.ndarray:
    return np.stack([decode_image(seed_images / name) for name in SEEDS])


def in_process(model_cache: Path, crops: np.ndarray) -> list[list[dict[str, Any]]]:
    classifier = load_classifier("efficientnet_lite0", model_cache, threads=1)
    return [classifier.top5(row) for row in classifier.predict_crops(crops)]


def test_a_batch_sent_through_the_pipe_gets_the_in_process_predictions(
    worker: tuple[Connection, Any], seed_crops: np.ndarray, model_cache: Path
) -> None:
    conn, _process = worker
    conn.send(seed_crops)
    assert conn.recv() == ("ok", in_process(model_cache, seed_crops))


@pytest.mark.skipif(not hasattr(os, "memfd_create"), reason="memory files are Linux's")
def test_batches_in_the_shared_buffer_get_the_in_process_predictions(
    worker: tuple[Connection, Any], seed_crops: np.ndarray, model_cache: Path
) -> None:
    conn, process = worker
    shape = (8, *seed_crops.shape[1:])
    fd = os.memfd_create("test-crops")
    try:
        os.ftruncate(fd, int(np.prod(shape)))
        buffer = mmap.mmap(fd, int(np.prod(shape)))
        conn.send(("buffer", shape))
        reduction.send_handle(conn, fd, process.pid)
    finally:
        os.close(fd)
    shared = np.frombuffer(buffer, dtype=np.uint8).reshape(shape)
    expected = in_process(model_cache, seed_crops)
    shared[:5] = seed_crops
    conn.send(("crops", 5))
    assert conn.recv() == ("ok", expected)
    shared[:2] = seed_crops[3:]  # the buffer is reused: a smaller batch, other images
    conn.send(("crops", 2))
    assert conn.recv() == ("ok", expected[3:])


def test_the_pool_writes_the_prediction_files_the_in_process_classifier_writes(
    model_cache: Path, seed_images: Path, tmp_path: Path
) -> None:
    classifier = load_classifier("efficientnet_lite0", model_cache, threads=1)
    classify_folder(classifier, seed_images, tmp_path / "here")
    with PredictorPool(model_cache, workers=1, batch_size=2, max_wait_ms=5) as pool:
        pool.classify("efficientnet_lite0", seed_images, tmp_path / "pool")
    files = sorted(path.name for path in (tmp_path / "here").glob("*_pred.json"))
    assert len(files) == len(SEEDS)
    for name in files:
        assert (tmp_path / "pool" / name).read_text() == (tmp_path / "here" / name).read_text()
