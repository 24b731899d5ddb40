"""`python -m bench.ray_bench`: the Ray executor against the local executor and Ray Data, on this
machine, in one run, over the same images with the same model.

- local: the reference workflow on a real in-process service — zips renamed into a watched
  `incoming/`, the trigger, the local executor and its warm predictor pool, result zips in
  `processed/` — images/s from the first drop to the last result.
- ray: the same service and the same zips with `executor: {type: ray}` on a local Ray instance
  (jobs as Ray tasks, the model in a Ray actor).
- ray_data: what a Ray user would write instead — `ray.data` over the same image files,
  `map_batches` decoding with the same preprocessing, then `map_batches` with a callable class
  holding the same ONNX Runtime model (`load_classifier`), predictions written with
  `write_json`; images/s of the whole dataset run (its model actor's load included, as in
  every Ray Data batch job).

Each pipeline is warmed up first (as many jobs at once as the machine has cores, so that every
warm process a steady stream of uploads keeps is running; one small dataset for Ray Data); then
the three run in turn, `repeat` rounds, and the median of each counts (both services stay up
throughout, idle while the others run). `run()` returns the figures as
a dict, for `python -m bench` to add as a row.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import random
import shutil
import statistics
import tempfile
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np
from PIL import Image, ImageOps

from autoinfer.config import Config, ExecutorConfig, SourceConfig, StoreConfig, TriggerConfig

SEED_ZIP = Path(__file__).resolve().parent.parent / "tests" / "data" / "images.zip"
MODEL = "efficientnet_lite0"
BUCKET = "data"
BATCH_SIZE = 16  # the predictor pools' default batch, used for Ray Data too
TARGETS = {"ray_vs_local": 0.8, "ray_vs_ray_data": 1.0}


# --- the images -------------------------------------------------------------------------------


def build_images(folder: Path, count: int, seed: int = 9) -> list[Path]:
    """`count` distinct JPEGs made from the seed photos (random crops, mirrors and sizes)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    photos = []
    with zipfile.ZipFile(SEED_ZIP) as archive:
        for name in sorted(archive.namelist()):
            with Image.open(io.BytesIO(archive.read(name))) as image:
                photos.append(image.convert("RGB"))
    paths = []
    for index in range(count):
        photo = photos[index % len(photos)]
        width, height = photo.size
        crop_w, crop_h = int(width * rng.uniform(0.6, 1.0)), int(height * rng.uniform(0.6, 1.0))
        left, top = rng.randint(0, width - crop_w), rng.randint(0, height - crop_h)
        image = photo.crop((left, top, left + crop_w, top + crop_h))
        if rng.random() < 0.5:
            image = ImageOps.mirror(image)
        path = folder / f"img-{index:04d}.jpg"
        image.save(path, "JPEG", quality=rng.randint(82, 95))
        paths.append(path)
    return paths


def write_zips(images: Sequence[Path], folder: Path, per_zip: int, prefix: str) -> list[Path]:
    """`images` zipped `per_zip` at a time into `folder/<prefix>-NN.zip`."""
    folder.mkdir(parents=True, exist_ok=True)
    zips = []
    for number, start in enumerate(range(0, len(images), per_zip)):
        target = folder / f"{prefix}-{number:02d}.zip"
        with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as archive:
            for image in images[start : start + per_zip]:
                archive.write(image, image.name)
        zips.append(target)
    return zips


# --- the service pipeline (local or Ray executor) ---------------------------------------------


def service_config(root: Path, cache_dir: Path, executor: str, max_jobs: int) -> Config:
    return Config(
        data_dir=root / "state",
        cache_dir=cache_dir,
        stores={"local": StoreConfig(type="local", root=str(root / "buckets"))},
        sources=[SourceConfig(type="watch", store="local")],
        triggers=[
            TriggerConfig(
                name="classify-incoming",
                bucket=BUCKET,
                prefix="incoming/",
                suffix=".zip",
                job={
                    "name": "{key_stem}",
                    "model": {"source_type": "builtin", "source_uri": MODEL},
                    "data": {"input_uri": "{uri}", "output_uri": "{bucket_uri}/processed"},
                },
            )
        ],
        executor=ExecutorConfig(type=executor, max_jobs=max_jobs),  # type: ignore[arg-type]
    )


class ServicePipeline:
    """`with ServicePipeline(root, cache, "local"|"ray", max_jobs) as pipeline:` a running
    service to drop zips into; `pipeline.run(zips, images)` measures one round."""

    def __init__(self, root: Path, cache_dir: Path, executor: str, max_jobs: int) -> None:
        self.incoming = root / "buckets" / BUCKET / "incoming"
        self.processed = root / "buckets" / BUCKET / "processed"
        self.config = service_config(root, cache_dir, executor, max_jobs)
        self._server: Any = None

    def __enter__(self) -> Self:
        from autoinfer.api.server import BackgroundServer
        from autoinfer.service import AutoInferService

        self.incoming.mkdir(parents=True)
        self.processed.mkdir(parents=True)
        self.service = AutoInferService(self.config)
        self._server = BackgroundServer(self.service)
        self._server.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._server is not None:
            self._server.stop()

    def run(self, zips: Sequence[Path], images: int) -> float:
        """Images/s of one round: `zips` (`images` in all) dropped at once, until every
        result is there; then every job is checked."""
        started = _drop(zips, self.incoming)
        _wait_results(self.processed, {z.stem for z in zips}, self.service)
        rate = images / (time.monotonic() - started)
        _check(self.service, self.processed, [z.stem for z in zips], images)
        return rate


def _drop(zips: Sequence[Path], incoming: Path) -> float:
    """Copy the zips beside `incoming/` under hidden names, then rename them all in (each
    appears complete, as an S3 PUT does); when the first one appeared."""
    staged = []
    for source in zips:
        hidden = incoming / f".{source.name}.part"
        shutil.copyfile(source, hidden)
        staged.append((hidden, incoming / source.name))
    started = time.monotonic()
    for hidden, target in staged:
        os.replace(hidden, target)
    return started


def _wait_results(processed: Path, names: set[str], service: Any, timeout_s: float = 900) -> None:
    deadline = time.monotonic() + timeout_s
    while not names <= {p.name.removesuffix(".zip") for p in processed.iterdir()}:
        if time.monotonic() > deadline:
            jobs = [(j.name, j.status, j.reason) for j in service.jobs.list(limit=1000)[0]]
            raise RuntimeError(f"results missing after {timeout_s} s; jobs: {jobs}")
        time.sleep(0.005)


def _check(service: Any, processed: Path, names: Sequence[str], images: int) -> None:
    """Every job finished and the result zips hold one prediction per image. (A job's status
    follows its result by a moment: it is set after the upload.)"""
    deadline = time.monotonic() + 30
    while True:
        jobs = {job.name: job for job in service.jobs.list(limit=100_000)[0]}
        if all(jobs[name].terminal for name in names) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    found = 0
    for name in names:
        if jobs[name].status != "finished":
            raise RuntimeError(f"job {name}: {jobs[name].status} ({jobs[name].reason})")
        with zipfile.ZipFile(processed / f"{name}.zip") as archive:
            found += sum(1 for member in archive.namelist() if member.endswith("_pred.json"))
    if found != images:
        raise RuntimeError(f"{found} predictions for {images} images")


# --- Ray Data -----------------------------------------------------------------------------------


def decode_batch(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Paths → centre crops, the predictor pools' preprocessing (`decode_image`)."""
    from autoinfer.predictors.images import decode_image

    paths = [Path(str(path)) for path in batch["path"]]
    return {
        "file": np.asarray([path.name for path in paths]),
        "crop": np.stack([decode_image(path, 224, 256) for path in paths]),
    }


class RayDataClassifier:
    """The model in a Ray Data callable class: one ONNX Runtime session, loaded once."""

    def __init__(self, cache_dir: str) -> None:
        from autoinfer.predictors.zoo import load_classifier

        self.classifier = load_classifier(MODEL, Path(cache_dir))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        probs = self.classifier.predict_crops(batch["crop"])
        classes = [json.dumps(self.classifier.top5(row)) for row in probs]
        return {"file": batch["file"], "classes": np.asarray(classes)}


def measure_ray_data(images: Sequence[Path], cache_dir: Path, output: Path) -> float:
    """Images/s of a Ray Data batch-inference run over `images`, predictions written."""
    import ray.data

    logging.getLogger("ray.data").setLevel(logging.WARNING)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    started = time.monotonic()
    dataset = (
        ray.data.from_items([{"path": str(path)} for path in images])
        .map_batches(decode_batch, batch_size=BATCH_SIZE)
        .map_batches(
            RayDataClassifier,
            fn_constructor_kwargs={"cache_dir": str(cache_dir)},
            batch_size=BATCH_SIZE,
            compute=ray.data.ActorPoolStrategy(size=1),
        )
    )
    dataset.write_json(str(output))
    elapsed = time.monotonic() - started
    written = sum(len(path.read_text().splitlines()) for path in output.iterdir() if path.is_file())
    if written != len(images):
        raise RuntimeError(f"Ray Data wrote {written} predictions for {len(images)} images")
    return len(images) / elapsed


# --- the run ------------------------------------------------------------------------------------


def run(
    *,
    jobs: int = 8,
    images_per_job: int = 32,
    cache_dir: Path | None = None,
    workdir: Path | None = None,
    num_cpus: int | None = None,
    repeat: int = 3,
) -> dict[str, float]:
    """Measure the three pipelines over the same `jobs × images_per_job` images, `repeat` times
    each (the median counts: a shared machine is noisy); returns `{"images",
    "local_images_per_s", "ray_images_per_s", "ray_data_images_per_s", "ray_vs_local",
    "ray_vs_ray_data"}`. Starts (and stops) a local Ray instance with `num_cpus` (default:
    this machine's cores); Ray must not be initialized in this process."""
    import ray

    from autoinfer.predictors.__main__ import default_cache_dir
    from autoinfer.predictors.zoo import load_classifier

    if ray.is_initialized():
        raise RuntimeError(
            "bench.ray_bench starts its own Ray instance; ray is already initialized"
        )
    cache_dir = (cache_dir or default_cache_dir()).resolve()
    load_classifier(MODEL, cache_dir)  # export the model once, outside every measurement
    root = Path(tempfile.mkdtemp(prefix="autoinfer-ray-bench-", dir=workdir))
    try:
        images = build_images(root / "images", jobs * images_per_job)
        cores = os.cpu_count() or 1
        warm = build_images(root / "warm-images", images_per_job * cores, seed=1)
        # The same images every round, under new names (a new upload each time).
        rounds = [
            write_zips(images, root / "zips", images_per_job, f"batch-{number}")
            for number in range(repeat)
        ]
        warmup = write_zips(warm, root / "zips", images_per_job, "warmup")
        # Model actors look for the model cache at $XDG_CACHE_HOME/autoinfer.
        cache_home = root / "cache-home"
        cache_home.mkdir()
        (cache_home / "autoinfer").symlink_to(cache_dir)
        local: list[float] = []
        on_ray: list[float] = []
        ray_data: list[float] = []
        with contextlib.ExitStack() as running:
            local_pipeline = running.enter_context(
                ServicePipeline(root / "local", cache_dir, "local", jobs)
            )
            local_pipeline.run(warmup, len(warm))
            ray.init(
                num_cpus=num_cpus or os.cpu_count(),
                include_dashboard=False,
                logging_level="ERROR",
                log_to_driver=False,
                runtime_env={"env_vars": {"XDG_CACHE_HOME": str(cache_home)}},
            )
            running.callback(ray.shutdown)
            ray_pipeline = running.enter_context(
                ServicePipeline(root / "ray", cache_dir, "ray", jobs)
            )
            ray_pipeline.run(warmup, len(warm))
            measure_ray_data(warm[:images_per_job], cache_dir, root / "ray-data-warmup")
            # Rounds interleaved, so that a change in the machine's load hits all three alike.
            for number, zips in enumerate(rounds):
                local.append(local_pipeline.run(zips, len(images)))
                on_ray.append(ray_pipeline.run(zips, len(images)))
                ray_data.append(measure_ray_data(images, cache_dir, root / f"ray-data-{number}"))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    local_rate, ray_rate, ray_data_rate = (
        statistics.median(figures) for figures in (local, on_ray, ray_data)
    )
    return {
        "images": float(len(images)),
        "local_images_per_s": round(local_rate, 1),
        "ray_images_per_s": round(ray_rate, 1),
        "ray_data_images_per_s": round(ray_data_rate, 1),
        "ray_vs_local": round(ray_rate / local_rate, 2),
        "ray_vs_ray_data": round(ray_rate / ray_data_rate, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ray_bench", description=__doc__)
    parser.add_argument("--jobs", type=int, default=8, help="zips (one job each)")
    parser.add_argument("--images-per-job", type=int, default=32)
    parser.add_argument("--cache", type=Path, default=None, help="model cache")
    parser.add_argument("--cpus", type=int, default=None, help="CPUs of the Ray instance")
    parser.add_argument("--repeat", type=int, default=3, help="measurements per pipeline")
    args = parser.parse_args(argv)
    figures = run(
        jobs=args.jobs,
        images_per_job=args.images_per_job,
        cache_dir=args.cache,
        num_cpus=args.cpus,
        repeat=args.repeat,
    )
    print(
        f"{int(figures['images'])} images, {args.jobs} jobs, on {os.cpu_count()} cores "
        f"(median of {args.repeat})"
    )
    for key in ("local_images_per_s", "ray_images_per_s", "ray_data_images_per_s"):
        print(f"  {key:24} {figures[key]:8.1f}")
    for key, target in TARGETS.items():
        verdict = "meets" if figures[key] >= target else "misses"
        print(f"  {key:24} {figures[key]:8.2f}   ({verdict} the target ≥ {target})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
