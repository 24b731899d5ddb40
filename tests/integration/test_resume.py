"""Resume instead of restart, with the real predictor pool: an attempt stopped part-way keeps
its predictions; the next classifies only the rest and writes what an uninterrupted run writes
(names that depend on all the images included). Then through the service: a lost attempt
neither spends the job's single attempt nor starts again from the first image."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from autoinfer.errors import JobStopped
from autoinfer.predictors import PredictorPool
from autoinfer.resume import FILE_NAME, classify_resuming

COUNT = 40


@pytest.fixture(scope="module")
def pool(model_cache: Path) -> Iterator[PredictorPool]:
    with PredictorPool(model_cache, workers=1, batch_size=4, max_wait_ms=10) as shared:
        yield shared


@pytest.fixture
def images(seed_images: Path, tmp_path: Path) -> Path:
    """COUNT images, some of whose prediction names collide (x.jpg / x.png, a/y / b/y)."""
    folder = tmp_path / "data"
    seeds = sorted(seed_images.iterdir())
    for index in range(COUNT - 4):
        (folder / "many").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(seeds[index % len(seeds)], folder / "many" / f"copy{index:03d}.jpg")
    for name in ("x.jpg", "x.png", "a/y.jpg", "b/y.jpg"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(seeds[0], folder / name)
    return folder


def outputs(folder: Path) -> dict[str, bytes]:
    """Every file below `folder` by relative path, the manifest without its creation time."""
    found = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if path.name == "manifest.json":
            manifest = json.loads(data)
            manifest.pop("created")
            data = json.dumps(manifest).encode()
        found[path.relative_to(folder).as_posix()] = data
    return found


def run(
    pool: PredictorPool, images: Path, tmp_path: Path, name: str, **options: Any
) -> tuple[Path, list[str]]:
    log: list[str] = []
    output = tmp_path / name / "output"
    classify_resuming(
        pool.classify,
        tmp_path / "job.resume",
        "efficientnet_lite0",
        images,
        output,
        workdir=tmp_path / name,
        log=log.append,
        **options,
    )
    return output, log


def settle(pool: PredictorPool) -> None:
    deadline = time.monotonic() + 60
    while (stats := pool.stats())["workers_busy"] or stats["images_queued"]:
        assert time.monotonic() < deadline, f"the pool stays busy: {stats}"
        time.sleep(0.02)


def classified(pool: PredictorPool) -> int:
    return int(pool.stats()["images_classified"])


def test_a_stopped_attempt_is_resumed_and_the_result_is_the_uninterrupted_one(
    pool: PredictorPool, images: Path, tmp_path: Path
) -> None:
    whole, log = run(pool, images, tmp_path / "reference", "whole")
    assert log == []
    assert len(list(whole.rglob("*_pred.json"))) == COUNT
    assert {"x.jpg_pred.json", "x.png_pred.json", "a/y_pred.json", "b/y_pred.json"} <= set(
        outputs(whole)
    )

    # The first attempt is stopped once some batches are kept (as a crash would leave it).
    stop = threading.Event()
    seen: list[dict[str, Any]] = []

    def on_items(records: list[dict[str, Any]]) -> None:
        seen.extend(records)
        if len(seen) >= COUNT // 3:
            stop.set()

    with pytest.raises(JobStopped):
        run(pool, images, tmp_path, "attempt-1", cancelled=stop, on_items=on_items)
    kept = (tmp_path / "job.resume" / FILE_NAME).read_text().splitlines()
    assert len(kept) - 1 >= COUNT // 3  # the fingerprint line, then one per prediction

    settle(pool)  # the stopped attempt's images already in a worker finish (and are dropped)
    before = classified(pool)
    progress: list[tuple[int, int]] = []
    items: list[dict[str, Any]] = []
    resumed, log = run(
        pool,
        images,
        tmp_path,
        "attempt-2",
        progress=lambda done, total: progress.append((done, total)),
        on_items=items.extend,
    )
    done = len(kept) - 1
    assert log == [f"resumed: {done:,} of {COUNT} images already done"]
    assert classified(pool) - before == COUNT - done  # only the rest was classified again
    assert outputs(resumed) == outputs(whole)  # same names, same bytes
    assert progress[0] == (done, COUNT) and progress[-1] == (COUNT, COUNT)
    assert sorted(item["file"] for item in items) == sorted(
        json.loads(data)["file"] for name, data in outputs(whole).items() if name != "manifest.json"
    )
    assert not (tmp_path / "attempt-2" / "resume-input").exists()


def test_kept_predictions_of_another_input_are_not_used(
    pool: PredictorPool, images: Path, tmp_path: Path
) -> None:
    run(pool, images, tmp_path, "first")
    (images / "x.png").write_bytes((images / "many" / "copy001.jpg").read_bytes())  # changed
    before = classified(pool)
    again, log = run(pool, images, tmp_path, "second")
    assert log == [] and classified(pool) - before == COUNT
    assert len(list(again.rglob("*_pred.json"))) == COUNT


def test_kept_predictions_stay_while_their_job_may_run_again(tmp_path: Path) -> None:
    from autoinfer.db import Database
    from autoinfer.executors.local import remove_stale_scratch
    from autoinfer.jobs.service import JobService
    from autoinfer.jobs.spec import JobSpec
    from autoinfer.resume import checkpoint_folder

    jobs = JobService(Database(f"sqlite:///{tmp_path / 'jobs.db'}"))
    spec = JobSpec.model_validate({"name": "j", "data": {"input_uri": "/i", "output_uri": "/o"}})
    waiting, _ = jobs.create(spec)  # requeued after a crash: `new`, may resume
    ended, _ = jobs.create(spec)
    jobs.request_stop(ended.id)
    scratch = tmp_path / "scratch"
    for job_id in (waiting.id, ended.id, "gone"):
        checkpoint_folder(scratch, job_id).mkdir(parents=True)
    removed = remove_stale_scratch(scratch, jobs, set)
    assert sorted(removed) == sorted([f"{ended.id}.resume", "gone.resume"])
    assert checkpoint_folder(scratch, waiting.id).is_dir()


def test_a_job_of_fewer_than_min_images_keeps_no_predictions(
    pool: PredictorPool, seed_images: Path, tmp_path: Path
) -> None:
    from autoinfer.resume import MIN_IMAGES

    assert len(list(seed_images.iterdir())) < MIN_IMAGES <= COUNT  # the other tests keep theirs
    output, log = run(pool, seed_images, tmp_path, "small")
    assert log == [] and len(list(output.rglob("*_pred.json"))) == len(list(seed_images.iterdir()))
    assert not (tmp_path / "job.resume").exists()  # no folder, no file, nothing to remove
