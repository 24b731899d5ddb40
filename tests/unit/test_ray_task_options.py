"""How a job spec's resources become the options of its Ray task (pure, no Ray instance)."""

from __future__ import annotations

import pytest

pytest.importorskip("ray")

from autoinfer.executors.ray_node import (
    ray_accelerator_type,
    requested_resources,
    task_options,
)
from autoinfer.jobs.spec import JobSpec


def spec(**fields: object) -> JobSpec:
    return JobSpec.model_validate(
        {"name": "j", "data": {"input_uri": "/in.zip", "output_uri": "/out"}, **fields}
    )


@pytest.mark.parametrize(
    ("gpu_type", "ray_name"),
    [
        ("t4", "T4"),
        ("a100", "A100"),
        ("H100", "H100"),
        ("l40s", "L40S"),
        ("a10g", "A10G"),
        ("rtx3090", "GeForce-RTX-3090"),
        ("rtx2080ti", "GeForce-RTX-2080-Ti"),
        ("rtxa6000", "RTX-A6000"),
        ("Intel-GPU-Max-1550", "Intel-GPU-Max-1550"),
    ],
)
def test_gpu_types_are_spelled_as_ray_names_accelerators(gpu_type: str, ray_name: str) -> None:
    assert ray_accelerator_type(gpu_type) == ray_name


def test_command_job_asks_for_its_cpus_gpus_and_gpu_type() -> None:
    job = spec(
        resources={"cpu_count": 4, "gpu_count": 2, "gpu_type": "a100"},
        model={"source_type": "local", "source_uri": "/model"},
        workers=["python predict.py"],
    )
    options = task_options(job, "0123456789")
    assert (options["num_cpus"], options["num_gpus"], options["accelerator_type"]) == (4, 2, "A100")
    assert options["max_retries"] == 0  # a lost attempt is retried as a new attempt of the job
    assert requested_resources(options) == {"CPU": 4.0, "GPU": 2.0, "accelerator_type:A100": 0.001}


def test_builtin_model_job_leaves_the_gpu_to_its_model_actor() -> None:
    job = spec(resources={"cpu_count": 1, "gpu_count": 1, "gpu_type": "t4"})
    options = task_options(job, "0123456789")
    assert options["num_gpus"] == 0 and "accelerator_type" not in options
    assert requested_resources(options) == {"CPU": 1.0}
