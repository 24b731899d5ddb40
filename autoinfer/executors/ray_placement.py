"""Where a job's Ray task may run: its options from the job's resources, in Ray's names
(pure, no Ray instance needed), and a line saying what it waits for."""

from __future__ import annotations

import json
import re
from typing import Any

from autoinfer.jobs.spec import JobSpec
from autoinfer.runner import runs_in_predictor_pool


def ray_accelerator_type(gpu_type: str) -> str:
    """A job's `gpu_type` in Ray's spelling of accelerator types (`ray.util.accelerators`):
    `t4` → `T4`, `a100` → `A100`, `rtx3090` → `GeForce-RTX-3090`, `rtxa6000` → `RTX-A6000`;
    a name already in Ray's spelling is kept."""
    name = gpu_type.strip()
    key = re.sub(r"[\s_-]", "", name.lower())
    if match := re.fullmatch(r"rtx(a\d{4})", key):
        return f"RTX-{match[1].upper()}"
    if match := re.fullmatch(r"rtx(\d{4})(ti)?", key):
        return f"GeForce-RTX-{match[1]}" + ("-Ti" if match[2] else "")
    if re.fullmatch(r"[a-z]\d+[a-z]*", key):
        return key.upper()
    return name


def task_options(spec: JobSpec, job_id: str) -> dict[str, Any]:
    """The Ray options of a job's task: its resources, and no retries by Ray itself (a lost
    attempt is retried through the job's own attempts). A built-in model job's GPU is its
    model actors' (`predictors.ray_pool`), so its task asks for CPUs only."""
    resources = spec.resources
    options: dict[str, Any] = {
        "num_cpus": resources.cpu_count,
        "num_gpus": 0,
        "max_retries": 0,
        "retry_exceptions": False,
        "name": f"autoinfer job {spec.name} ({job_id[:8]})",
    }
    if resources.gpu_count and not runs_in_predictor_pool(spec.model_dump(mode="json")):
        options["num_gpus"] = resources.gpu_count
        if resources.gpu_type:
            options["accelerator_type"] = ray_accelerator_type(resources.gpu_type)
    return options


def requested_resources(options: dict[str, Any]) -> dict[str, float]:
    """The Ray resources `options` ask for, as Ray names them."""
    wanted = {"CPU": float(options["num_cpus"])}
    if options.get("num_gpus"):
        wanted["GPU"] = float(options["num_gpus"])
    if options.get("accelerator_type"):
        wanted[f"accelerator_type:{options['accelerator_type']}"] = 0.001
    return wanted


def placement_note(options: dict[str, Any]) -> str:
    """The job log's line on its submitted task: what it asks for, and what no node of the
    cluster has now (the job waits for it)."""
    import ray  # the optional extra, present where a Ray executor runs
    from ray.exceptions import RayError

    wanted = requested_resources(options)
    note = f"ray: submitted as task '{options['name']}', requesting {json.dumps(wanted)}"
    try:
        totals = ray.cluster_resources()
    except RayError:
        return note
    missing = [name for name, amount in wanted.items() if totals.get(name, 0) < amount]
    if missing:
        note += f"; no node of the cluster has {', '.join(missing)} now: the job waits for one"
    return note
