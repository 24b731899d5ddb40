"""The GPU path for built-in models, as far as a machine without a GPU can run it: the CUDA
worker group's feeding (one process, decode threads, two batches in flight) on the CPU
provider, where jobs asking for a GPU go, and `bench --gpu`'s one line."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from autoinfer.config import GpuConfig
from autoinfer.errors import ModelError
from autoinfer.predictors.devices import CPU, CUDA, cuda_environment, cuda_problem
from autoinfer.predictors.pool import PredictorPool
from autoinfer.predictors.worker_group import Placement
from tests.conftest import RunningService
from tests.support.waiting import wait_until

NO_GPU = pytest.mark.skipif(cuda_problem() is None, reason="this machine has a CUDA GPU")


class CpuFedLikeCuda(PredictorPool):
    """The pool with its CUDA group fed as on a GPU (one process, 3 decode threads, two
    batches in flight, its own environment) but on ONNX Runtime's CPU provider."""

    def _place(self, device: str) -> Placement:
        if device != "cuda":
            return super()._place(device)
        return Placement(
            "cuda",
            tuple(CPU),
            workers=1,
            ort_threads=1,
            decode_threads=3,
            in_flight=2,
            environment=(("CUDA_VISIBLE_DEVICES", "7"),),
        )


@pytest.fixture(scope="module")
def pool(model_cache: Path) -> Iterator[PredictorPool]:
    with CpuFedLikeCuda(model_cache, workers=1, batch_size=4, max_wait_ms=10) as shared:
        yield shared


def images(seed_images: Path, folder: Path, count: int) -> Path:
    """`count` copies of the seed images and two files that are not images, in `folder`."""
    folder.mkdir(parents=True)
    seeds = sorted(seed_images.iterdir())
    for index in range(count):
        shutil.copyfile(seeds[index % len(seeds)], folder / f"copy{index:03d}.jpg")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    (folder / "text.png").write_text("hello")
    return folder


def predictions(output: Path) -> dict[str, Any]:
    return {path.name: json.loads(path.read_text()) for path in sorted(output.glob("*_pred.json"))}


def test_the_cuda_group_feeds_its_worker_like_the_cpu_group_and_gets_the_same_predictions(
    pool: PredictorPool, seed_images: Path, tmp_path: Path
) -> None:
    data = images(seed_images, tmp_path / "data", 37)
    on_cpu = pool.classify("efficientnet_lite0", data, tmp_path / "cpu")
    before = pool.stats()["batches_run"]
    on_cuda = pool.classify("efficientnet_lite0", data, tmp_path / "cuda", device="cuda")
    assert on_cuda["images"] == on_cpu["images"] == 39 and on_cuda["errors"] == 2
    assert len(predictions(tmp_path / "cuda")) == 39
    assert predictions(tmp_path / "cuda") == predictions(tmp_path / "cpu")
    assert pool.stats()["batches_run"] - before >= 10  # 39 images in batches of 4
    assert sorted(pool.groups()) == [
        ("efficientnet_lite0", "cpu"),
        ("efficientnet_lite0", "cuda"),
    ]


def test_concurrent_jobs_share_the_cuda_group_and_each_gets_its_own_results(
    pool: PredictorPool, seed_images: Path, tmp_path: Path
) -> None:
    data = [images(seed_images, tmp_path / f"data{n}", 9 + 4 * n) for n in range(3)]
    outcomes: dict[int, Any] = {}

    def job(number: int) -> None:
        out = tmp_path / f"out{number}"
        outcomes[number] = pool.classify("efficientnet_lite0", data[number], out, device="cuda")

    threads = [threading.Thread(target=job, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert [outcomes[n]["images"] for n in range(3)] == [11, 15, 19]
    reference = pool.classify("efficientnet_lite0", data[2], tmp_path / "reference")
    assert reference["images"] == 19
    assert predictions(tmp_path / "out2") == predictions(tmp_path / "reference")


def test_a_cuda_worker_that_dies_fails_the_jobs_of_both_batches_it_held_and_is_replaced(
    model_cache: Path, seed_images: Path, tmp_path: Path
) -> None:
    data = images(seed_images, tmp_path / "data", 400)
    with CpuFedLikeCuda(model_cache, workers=1, batch_size=8, max_wait_ms=10) as cuda_pool:
        cuda_pool.classify("efficientnet_lite0", seed_images, tmp_path / "warm", device="cuda")
        [pid] = cuda_pool.worker_pids()
        failure: list[BaseException] = []

        def job() -> None:
            try:
                cuda_pool.classify("efficientnet_lite0", data, tmp_path / "out", device="cuda")
            except ModelError as error:
                failure.append(error)

        running = threading.Thread(target=job)
        running.start()
        wait_until(lambda: cuda_pool.stats()["workers_busy"], "the worker is busy")
        os.kill(pid, signal.SIGKILL)
        running.join(120)
        assert failure and f"worker process {pid} died" in str(failure[0])
        manifest = cuda_pool.classify(
            "efficientnet_lite0", seed_images, tmp_path / "after", device="cuda"
        )
        assert manifest["images"] == 5
        assert cuda_pool.worker_pids() != [pid]


def builtin_job(api: RunningService, name: str, seed_zip: Path, out: Path, **extra: Any) -> Any:
    job = api.client().jobs.create(
        name=name,
        type="inference",
        data={"input_uri": str(seed_zip), "output_uri": str(out)},
        model={"source_type": "builtin", "source_uri": "efficientnet_lite0"},
        **extra,
    )
    deadline = time.monotonic() + 300
    while job.status not in ("finished", "failed", "stopped"):
        assert time.monotonic() < deadline, f"job {name} did not end"
        time.sleep(0.05)
        job.refresh()
    return api.service.jobs.get(str(job.id))


def log_text(api: RunningService, job_id: str) -> str:
    return "\n".join(line.line for line in api.service.jobs.logs(job_id))


@NO_GPU
def test_without_gpus_a_job_asking_for_one_runs_on_the_cpu_and_says_why_in_one_line(
    start_service: Callable[..., RunningService], seed_zip: Path, tmp_path: Path
) -> None:
    api = start_service(gpus=[])  # the configured inventory: none
    plain = builtin_job(api, "plain", seed_zip, tmp_path / "plain")
    asking = builtin_job(api, "asking", seed_zip, tmp_path / "asking", gpu_count=1)
    assert (plain.status, asking.status) == ("finished", "finished")
    note = f"gpu_count 1 asked but {cuda_problem()}: this machine has no GPUs, running on its CPU"
    assert note in log_text(api, asking.id).splitlines()
    assert "gpu_count" not in log_text(api, plain.id)
    assert api.service.predictors.groups() == [("efficientnet_lite0", "cpu")]


@NO_GPU
def test_with_gpus_built_in_models_cannot_use_a_job_asking_for_one_fails_at_once(
    start_service: Callable[..., RunningService], seed_zip: Path, tmp_path: Path
) -> None:
    api = start_service(gpus=[GpuConfig(index=0, type="t4")])
    asking = builtin_job(api, "asking", seed_zip, tmp_path / "asking", gpu_count=1)
    assert asking.status == "failed" and asking.attempt == 1  # not retried
    assert asking.reason == f"gpu_count 1 asked but {cuda_problem()}"
    wrong = builtin_job(api, "wrong", seed_zip, tmp_path / "wrong", gpu_count=1, gpu_type="a100")
    assert wrong.status == "failed" and wrong.attempt == 1
    assert wrong.reason == "no GPU of type a100 on this machine (have: 1 × t4)"
    plain = builtin_job(api, "plain", seed_zip, tmp_path / "plain")
    assert plain.status == "finished"


@NO_GPU
def test_bench_gpu_says_in_one_line_that_there_is_no_gpu_and_exits_0() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--gpu"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"bench --gpu: no GPU here: {cuda_problem()}; nothing measured\n"


@NO_GPU
def test_without_a_gpu_the_cuda_placement_is_the_cpu_group(model_cache: Path) -> None:
    with PredictorPool(model_cache, workers=2, decode_threads=6) as plain:
        assert plain.placement("cuda") == plain.placement("cpu") == plain.placement()
        assert plain.placement("cuda").device == "cpu" and plain.placement().workers == 2
        assert plain.decode_threads == 6


@NO_GPU
def test_doctor_says_whether_built_in_models_can_use_a_gpu(tmp_path: Path) -> None:
    from autoinfer.cli.doctor import Doctor
    from autoinfer.config import Config, PredictorsConfig

    reason = cuda_problem()

    def finding(**settings: Any) -> Any:
        [found] = Doctor(Config(data_dir=tmp_path, **settings), None).check_gpu()
        return found

    found = finding(gpus=[])
    assert found.ok and found.message == (
        f"built-in models run on the CPU here ({reason}); their jobs with gpu_count ≥ 1 too, "
        "with a line in the job's log"
    )
    found = finding(gpus=[GpuConfig(index=0, type="t4")])
    assert found.ok and found.message == (
        f"warning: built-in models cannot use this machine's GPUs ({reason}): their jobs "
        "with gpu_count ≥ 1 fail"
    )
    found = finding(predictors=PredictorsConfig(device="cuda"))
    assert not found.ok and found.message.startswith(f"predictors.device is cuda but {reason}")


class CudaProvidersAsked(PredictorPool):
    """The CUDA group as a GPU machine places it (CUDA's providers, GPU 5 alone)."""

    def _place(self, device: str) -> Placement:
        return Placement("cuda", tuple(CUDA), 1, 1, 2, 2, tuple(cuda_environment(5).items()))


@NO_GPU
def test_a_cuda_worker_whose_runtime_falls_back_to_the_cpu_refuses_to_start_saying_why(
    model_cache: Path, seed_images: Path, tmp_path: Path
) -> None:
    """ONNX Runtime quietly runs on the CPU when its CUDA provider cannot start; the CUDA
    worker says so instead (the environment it was given included: it sees GPU 5)."""
    with (
        CudaProvidersAsked(model_cache) as cuda_pool,
        pytest.raises(ModelError, match=r"could not start its CUDAExecutionProvider \(GPU 5\)"),
    ):
        cuda_pool.classify("efficientnet_lite0", seed_images, tmp_path / "out", device="cuda")


def test_a_pipelined_worker_answers_batches_sent_back_to_back_in_order(
    model_cache: Path, seed_images: Path, tmp_path: Path
) -> None:
    """The CUDA worker's side of the pipe (`serve` with decode threads) on the CPU provider:
    three batches sent at once, then the end; three answers in order, each what the serial
    path gives, thumbnails and errors included; then it exits."""
    import multiprocessing

    from autoinfer.predictors.worker import classify_files, serve
    from autoinfer.predictors.zoo import load_classifier

    data = images(seed_images, tmp_path / "data", 9)
    files = sorted(str(path) for path in data.iterdir())
    batches = [(files[0:4], [True] * 4), (files[4:9], [False] * 5), (files[9:], [True, False])]
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe(duplex=True)
    args = (theirs, "efficientnet_lite0", None, str(model_cache), 1, 40_000_000, None, CPU, 3)
    process = context.Process(target=serve, args=args, daemon=True)
    process.start()
    theirs.close()
    try:
        assert ours.recv()[0] == "ready"
        for batch in batches:
            ours.send(batch)
        ours.send(None)
        answers = [ours.recv() for _ in batches]
        process.join(30)
        assert process.exitcode == 0
    finally:
        if process.is_alive():
            process.kill()
        ours.close()
    classifier = load_classifier("efficientnet_lite0", model_cache, threads=1)
    expected = [("ok", classify_files(classifier, *batch)) for batch in batches]
    assert answers == expected
    assert [len(payload) for _, payload in answers] == [4, 5, 2]
    assert sum("error" in record for _, payload in answers for record, _ in payload) == 2
