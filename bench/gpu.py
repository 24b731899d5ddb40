"""`python -m bench --gpu`: the GPU path's figures, or one plain line saying why there are none.

Measuring needs ONNX Runtime's CUDA execution provider (the `onnxruntime-gpu` package) and a
CUDA device. On the same card, over the same 500 bench images (`bench.images`), decode included:

1. the bare ORT CUDA loop, as `bench.limit` runs it on the CPU: decode a batch in one thread,
   run it, take the top 5, repeat (`gpu_limit_ips`);
2. the same loop decoding on the CUDA worker's decode threads, the next batch while the GPU runs
   this one (`gpu_limit_threaded_ips`): what the CUDA worker does, without the service;
3. the pipeline: one zip of the images dropped into a real in-process service (`BenchService`)
   whose trigger's job asks for `gpu_count: 1`, drop to result (`gpu_pipeline_ips`), best of 2.

Prints the figures and the ratios of (3) to (1) and (2), and writes them to bench/gpu_results.json.
A few minutes at most on a GPU machine once the model is exported (`--cache`).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from autoinfer.predictors.devices import CUDA, cuda_problem

RESULTS = Path(__file__).resolve().parent / "gpu_results.json"
IMAGES = 500
BATCH_SIZE = 16  # the pool's default (`predictors.batch_size`)


def main(cache: Path | None, *, images: int = IMAGES, out: Path = RESULTS) -> int:
    problem = cuda_problem()
    if problem is not None:
        print(f"bench --gpu: no GPU here: {problem}; nothing measured")
        return 0
    results = run(cache, images)
    out.write_text(json.dumps(results, indent=2) + "\n")
    for key, value in results.items():
        print(f"{key:28} {value:.3f}" if isinstance(value, float) else f"{key:28} {value}")
    print(f"results: {out}")
    if results["gpu_device"] != "cuda":
        print(f"bench --gpu: the pipeline's model ran on {results['gpu_device']}, not cuda alone")
        return 1
    return 0


def run(cache: Path | None, count: int, providers: Sequence[str] = CUDA) -> dict[str, Any]:
    """Every figure, in order. `providers`: CUDA's (the CPU's only to try this code without a
    GPU: the pipeline's job then runs on the CPU, as a job asking for a GPU does there)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from autoinfer.predictors.__main__ import default_cache_dir
    from bench.images import build_images, write_zip

    cache = (cache or default_cache_dir()).resolve()
    threads = max(2, min(16, os.cpu_count() or 1))  # the CUDA worker's default decode threads
    with tempfile.TemporaryDirectory(prefix="autoinfer-bench-gpu-") as folder:
        root = Path(folder)
        # In a helper process: the bare loop's CUDA context must not stay in the service's.
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as helper:
            images = helper.submit(build_images, root / "images", count).result()
            bare = helper.submit(measure_bare, images, cache, list(providers), 1).result()
            threaded = helper.submit(measure_bare, images, cache, list(providers), threads)
            bare_threaded = threaded.result()
        big = write_zip(images, root / "zips" / f"big-{count}.zip")
        warm = write_zip(images[:32], root / "zips" / "warmup.zip")
        pipeline, device = measure_pipeline(root / "service", cache, warm, big, count)
    return {
        "gpu_device": device,
        "images": count,
        "batch_size": BATCH_SIZE,
        "decode_threads": threads,
        "gpu_limit_ips": bare,
        "gpu_limit_threaded_ips": bare_threaded,
        "gpu_pipeline_ips": pipeline,
        "pipeline_vs_limit": pipeline / bare,
        "pipeline_vs_threaded_limit": pipeline / bare_threaded,
    }


def measure_bare(
    images: Sequence[Path], cache_dir: Path, providers: list[str], threads: int
) -> float:
    """Images per second of the bare loop on `providers`: decode a batch (in this thread, or on
    `threads` threads with the next batch decoding while this one runs), run it, top 5."""
    from autoinfer.predictors.decode_stage import DecodeStage, run_model
    from autoinfer.predictors.zoo import load_classifier

    classifier = load_classifier("efficientnet_lite0", cache_dir, threads=1, providers=providers)
    if providers[0] not in classifier.session.get_providers():
        raise RuntimeError(f"ONNX Runtime could not start {providers[0]}")
    stage = DecodeStage(classifier.preprocessing, threads)
    batches = [
        [str(path) for path in images[start : start + BATCH_SIZE]]
        for start in range(0, len(images), BATCH_SIZE)
    ]
    try:
        run_model(classifier, stage.decode(batches[0], [False] * len(batches[0])))  # warm-up
        started = time.perf_counter()
        upcoming = stage.submit(batches[0], [False] * len(batches[0]))
        for number in range(len(batches)):
            decoded = upcoming()
            if number + 1 < len(batches):  # with threads: decodes while the model runs
                following = batches[number + 1]
                upcoming = stage.submit(following, [False] * len(following))
            run_model(classifier, decoded)
        return len(images) / (time.perf_counter() - started)
    finally:
        stage.close()


def measure_pipeline(
    root: Path, cache_dir: Path, warm: Path, big: Path, count: int
) -> tuple[float, str]:
    """Images per second of one zip of `count` images through a service whose trigger's job
    asks for a GPU (best of 2, after a warm-up zip), and the device its model group ran on."""
    from bench.pipeline import BenchService

    service = BenchService(root, cache_dir)
    trigger = service.config.triggers[0]
    job = dict(trigger.job or {})
    job["resources"] = {**job.get("resources", {}), "gpu_count": 1}
    service.config = service.config.model_copy(
        update={"triggers": [trigger.model_copy(update={"job": job})]}
    )
    best = 0.0
    with service:
        service.run([warm])
        for round_ in range(2):
            upload = root / f"big-{round_}.zip"
            upload.write_bytes(big.read_bytes())
            best = max(best, count / service.run([upload]).span_s)
        service.check({"warmup": 32, "big-0": count, "big-1": count})
        devices = sorted({group for _, group in service.service.predictors.groups()})
    return best, ",".join(devices)
