"""Where built-in models run: ONNX Runtime's CPU provider, or its CUDA provider on a GPU.

`predictors.device: cuda` asks for the GPU. It is used when ONNX Runtime has the CUDA execution
provider (the `onnxruntime-gpu` package) and a CUDA device is present; otherwise the models run
on the CPU and the reason is said in one line (`select_providers`).

A built-in model job whose `resources.gpu_count` is 1 or more asks for the GPU itself
(`job_device`), whatever `predictors.device` says; its images then go to the model's CUDA worker
group (`predictors.pool`), beside the CPU group other jobs use. The CUDA group's worker sees one
GPU, `predictors.cuda_device` (its index in PCI bus order, as `executors.gpus` numbers GPUs),
through `CUDA_VISIBLE_DEVICES` (`cuda_environment`). That GPU is not taken from the
executor's GPU accounting: worker commands may be given it too. Where built-in models cannot use a GPU,
such a job follows the policy of `executors.gpus` for worker commands: a machine without GPUs
runs it on the CPU with one line in its log; a machine with GPUs that built-in models cannot use
(no CUDA execution provider, or no device node) fails it at once, not retried, saying why.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

from autoinfer.errors import ModelError

CPU = ["CPUExecutionProvider"]
CUDA = ["CUDAExecutionProvider", "CPUExecutionProvider"]


def cuda_problem() -> str | None:
    """Why built-in models cannot run on a CUDA GPU here, or None when they can."""
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        return (
            f"onnxruntime {onnxruntime.__version__} has no CUDA execution provider "
            "(install onnxruntime-gpu)"
        )
    if not any(Path("/dev").glob("nvidia[0-9]*")):
        return "no CUDA device (no /dev/nvidia*)"
    return None


def cuda_environment(index: int, inherited: str | None = None) -> dict[str, str]:
    """The environment a CUDA worker process starts with: it sees GPU `index` only (PCI bus
    order, the numbering of `executors.gpus` and of NVML), as CUDA device 0. Where the service
    itself was started with `CUDA_VISIBLE_DEVICES` (`inherited`; None: this process's, a
    container's or a scheduler's choice), `index` counts among those: their index-th entry."""
    if inherited is None:
        inherited = os.environ.get("CUDA_VISIBLE_DEVICES")
    if inherited is None:
        return {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": str(index)}
    visible = [entry.strip() for entry in inherited.split(",") if entry.strip()]
    if index >= len(visible):
        raise ModelError(
            f"predictors.cuda_device is {index} but this service sees {len(visible)} GPU(s) "
            f"(CUDA_VISIBLE_DEVICES={inherited!r})"
        )
    return {"CUDA_VISIBLE_DEVICES": visible[index]}


class JobDevice(NamedTuple):
    """Where one built-in model job's images run, and what its log says about it."""

    device: str | None  # "cuda"; "cpu"; None: the pool's `predictors.device`
    note: str | None = None  # one line for the job's log (or its failure reason)
    fails: bool = False  # the job fails at once with `note`, not retried


def job_device(gpu_count: int, *, machine_has_gpus: bool) -> JobDevice:
    """Where a built-in model job asking for `gpu_count` GPUs runs. `machine_has_gpus`: the
    executor's GPU inventory (configured or detected) is not empty."""
    if gpu_count < 1:
        return JobDevice(None)
    problem = cuda_problem()
    if problem is None:
        return JobDevice("cuda")
    asked = f"gpu_count {gpu_count} asked but {problem}"
    if machine_has_gpus:
        return JobDevice(None, asked, fails=True)
    return JobDevice("cpu", f"{asked}: this machine has no GPUs, running on its CPU")


def select_providers(device: str) -> tuple[list[str], str | None]:
    """ONNX Runtime's providers for `device` ("cpu" or "cuda"), and the one line that says why
    the GPU was asked for but is not used (None when nothing needs saying)."""
    if device != "cuda":
        return list(CPU), None
    problem = cuda_problem()
    if problem is not None:
        return list(CPU), f"predictors.device is cuda but {problem}: built-in models run on the CPU"
    return list(CUDA), None
