"""A job's share of a batch comes back at once: the job's thread wakes once per batch and
writes its prediction files, items and progress once, not once per image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from autoinfer.predictors import PredictorPool


def test_a_job_within_one_batch_gets_its_results_in_one_call(
    model_cache: Path, seed_images: Path, tmp_path: Path
) -> None:
    calls: list[list[dict[str, Any]]] = []
    progress: list[tuple[int, int]] = []
    images = len(list(seed_images.iterdir()))
    with PredictorPool(model_cache, workers=1, batch_size=16, max_wait_ms=50) as pool:
        pool.classify("efficientnet_lite0", seed_images, tmp_path / "warm")  # model loaded
        for attempt in range(3):
            calls.clear()
            progress.clear()
            pool.classify(
                "efficientnet_lite0",
                seed_images,
                tmp_path / f"out-{attempt}",
                on_items=calls.append,
                progress=lambda done, total: progress.append((done, total)),
            )
            assert [len(call) for call in calls] == [images]
            assert progress == [(images, images)]
            assert len(list((tmp_path / f"out-{attempt}").glob("*_pred.json"))) == images


def test_finish_many_hands_a_share_over_in_one_piece() -> None:
    import threading

    from autoinfer.predictors.worker_group import QueuedJob

    job = QueuedJob(images=[Path(f"{n}.jpg") for n in range(5)], files=[], in_flight=5)
    seen: list[int] = []

    def wait() -> None:
        with job.cond:
            while not job.results:
                job.cond.wait(5)
            seen.append(len(job.results))

    waiter = threading.Thread(target=wait)
    waiter.start()
    job.finish_many([(n, {"classes": []}) for n in range(5)])
    waiter.join(5)
    assert seen == [5] and job.in_flight == 0
