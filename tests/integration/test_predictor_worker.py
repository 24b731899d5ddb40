"""A predictor worker process decodes the files of a batch itself and predicts what the
classifier predicts in this process; a file it cannot decode gets its error, not the batch."""

from __future__ import annotations

import io
import multiprocessing
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from autoinfer.gallery import THUMBNAIL_PX
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


def test_a_batch_of_files_gets_the_in_process_predictions_and_the_thumbnails_asked_for(
    worker: tuple[Connection, Any], seed_images: Path, seed_crops: np.ndarray, model_cache: Path
) -> None:
    conn, _process = worker
    paths = [str(seed_images / name) for name in SEEDS]
    wanted = [index % 2 == 0 for index in range(len(paths))]
    conn.send((paths, wanted))
    status, results = conn.recv()
    assert status == "ok"
    expected = in_process(model_cache, seed_crops)
    assert [record for record, _ in results] == [{"classes": classes} for classes in expected]
    for (_, thumbnail), asked in zip(results, wanted, strict=True):
        if not asked:
            assert thumbnail is None
            continue
        with Image.open(io.BytesIO(thumbnail)) as image:
            assert image.format == "JPEG"
            assert max(image.size) == THUMBNAIL_PX


def test_undecodable_files_get_their_error_and_the_rest_of_the_batch_its_classes(
    worker: tuple[Connection, Any],
    seed_images: Path,
    seed_crops: np.ndarray,
    model_cache: Path,
    tmp_path: Path,
) -> None:
    conn, _process = worker
    text = tmp_path / "notes.png"
    text.write_text("not an image at all")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes((seed_images / SEEDS[0]).read_bytes()[:300])
    paths = [str(text), str(seed_images / SEEDS[1]), str(truncated), str(tmp_path / "gone.jpg")]
    conn.send((paths, [True] * len(paths)))
    status, results = conn.recv()
    assert status == "ok"
    records = [record for record, _ in results]
    assert set(records[0]) == {"error"} and set(records[2]) == {"error"}
    assert set(records[3]) == {"error"}
    assert records[1] == {"classes": in_process(model_cache, seed_crops[1:2])[0]}
    assert [thumbnail is not None for _, thumbnail in results] == [False, True, False, False]
    # The worker keeps serving.
    conn.send(([str(seed_images / SEEDS[2])], [False]))
    assert conn.recv() == ("ok", [({"classes": in_process(model_cache, seed_crops[2:3])[0]}, None)])


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
