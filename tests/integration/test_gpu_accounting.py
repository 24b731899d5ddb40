"""GPU accounting in the local executor, through a real service with a configured inventory
of two GPUs (this machine needs none: the jobs only report what they were given).

Each worker command prints its `CUDA_VISIBLE_DEVICES` and then waits until the test creates
the file `go` in the job's own data folder (visible inside the sandbox, which binds that
folder), so the test decides when each job ends.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from autoinfer.config import ExecutorConfig, GpuConfig
from tests.conftest import RunningService
from tests.support.waiting import wait_until

WORKER = (
    'echo "gpus=[$CUDA_VISIBLE_DEVICES]"; '
    'while [ ! -e "$AUTOINFER_DATA_PATH/go" ]; do sleep 0.05; done'
)


def log_text(api: RunningService, job_id: str) -> str:
    return "\n".join(line.line for line in api.service.jobs.logs(job_id))


def given_gpus(api: RunningService, job_id: str) -> str | None:
    """What the job printed as its CUDA_VISIBLE_DEVICES, once it has."""
    for line in api.service.jobs.logs(job_id):
        if line.line.startswith("gpus=["):
            return line.line.removeprefix("gpus=[").removesuffix("]")
    return None


def release(api: RunningService, job_id: str) -> None:
    job = api.service.jobs.get(job_id)
    data = api.service.runner_context.scratch_root / f"{job.id}-{job.attempt}" / "data"
    (data / "go").touch()


def submit(api: RunningService, buckets: Path, name: str, **resources: Any) -> str:
    job = api.client().jobs.create(
        name=name,
        type="inference",
        workers=[WORKER],
        data={
            "input_uri": str(buckets / "data" / "input.txt"),
            "output_uri": str(buckets / "data" / "out"),
        },
        **resources,
    )
    return str(job.id)


def start(
    start_service: Callable[..., RunningService], tmp_path: Path
) -> tuple[RunningService, Path]:
    buckets = tmp_path / "buckets"
    (buckets / "data").mkdir(parents=True)
    (buckets / "data" / "input.txt").write_text("hello\n")
    api = start_service(
        executor=ExecutorConfig(max_jobs=3, lease_s=5),
        stores={"local": {"type": "local", "root": str(buckets)}},
        gpus=[GpuConfig(index=0, type="rtx3090"), GpuConfig(index=1, type="RTX 3090")],
    )
    # Enough cores for three 1-core jobs whatever this machine has: GPUs must be what holds
    # the third one back.
    api.service.executor.cpu_budget = 8  # type: ignore[attr-defined]
    return api, buckets


def test_three_one_gpu_jobs_on_two_gpus_the_third_waits_and_gets_the_freed_index(
    start_service: Callable[..., RunningService], tmp_path: Path
) -> None:
    api, buckets = start(start_service, tmp_path)
    ids = [
        submit(api, buckets, f"gpu-job-{n}", gpu_count=1, gpu_types=["rtx-3090"]) for n in range(3)
    ]

    def two_running_one_waiting() -> tuple[dict[str, str], str] | None:
        given = {job_id: given_gpus(api, job_id) for job_id in ids}
        running = {k: v for k, v in given.items() if v is not None}
        waiting = [k for k, v in given.items() if v is None]
        if len(running) != 2 or not waiting:
            return None
        if "waiting for 1 GPU(s) (rtx-3090): 2 of 2 in use" not in log_text(api, waiting[0]):
            return None
        return running, waiting[0]  # type: ignore[return-value]

    running, third = wait_until(two_running_one_waiting, "two jobs on GPUs and one waiting")
    assert sorted(running.values()) == ["0", "1"]
    assert api.service.jobs.get(third).status == "waiting for resources"

    first, freed = next(iter(running.items()))
    release(api, first)
    wait_until(lambda: api.service.jobs.get(first).status == "finished", "the first job to finish")
    assert wait_until(lambda: given_gpus(api, third), "the third job to start") == freed

    for job_id in ids:
        if job_id != first:
            release(api, job_id)
    for job_id in ids:
        wait_until(lambda: api.service.jobs.get(job_id).status == "finished", f"job {job_id}")  # noqa: B023
    # The executor gives a job's GPUs back just after its end is stored: wait for it, not race it.
    wait_until(lambda: api.service.executor.stats()["gpus_busy"] == 0, "every GPU to be free")


def test_a_job_without_gpus_sees_none_on_a_gpu_machine(
    start_service: Callable[..., RunningService], tmp_path: Path
) -> None:
    api, buckets = start(start_service, tmp_path)
    job_id = submit(api, buckets, "cpu-job")
    assert wait_until(lambda: given_gpus(api, job_id) is not None, "the job to start")
    assert given_gpus(api, job_id) == ""
    release(api, job_id)
    wait_until(lambda: api.service.jobs.get(job_id).status == "finished", "the job to finish")


def test_a_gpu_type_the_machine_has_none_of_fails_at_once_saying_what_it_has(
    start_service: Callable[..., RunningService], tmp_path: Path
) -> None:
    api, buckets = start(start_service, tmp_path)
    job_id = submit(api, buckets, "a100-job", gpu_count=1, gpu_type="a100")
    job = wait_until(
        lambda: (j := api.service.jobs.get(job_id)).status == "failed" and j, "the job to fail"
    )
    expected = "no GPU of type a100 on this machine (have: 2 × rtx3090)"
    assert job.reason == expected
    assert job.attempt == 1  # not retried: another attempt meets the same machine
    assert f"failed: {expected}" in log_text(api, job_id)
    too_many = submit(api, buckets, "three-gpus", gpu_count=3)
    job = wait_until(
        lambda: (j := api.service.jobs.get(too_many)).status == "failed" and j, "the job to fail"
    )
    assert job.reason == "3 GPUs asked for, this machine has 2 (have: 2 × rtx3090)"
