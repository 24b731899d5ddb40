"""Where built-in models run: ONNX Runtime's CPU provider, or its CUDA provider on a GPU.

`predictors.device: cuda` asks for the GPU. It is used when ONNX Runtime has the CUDA execution
provider (the `onnxruntime-gpu` package) and a CUDA device is present; otherwise the models run
on the CPU and the reason is said in one line (`select_providers`).
"""

from __future__ import annotations

from pathlib import Path

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


def select_providers(device: str) -> tuple[list[str], str | None]:
    """ONNX Runtime's providers for `device` ("cpu" or "cuda"), and the one line that says why
    the GPU was asked for but is not used (None when nothing needs saying)."""
    if device != "cuda":
        return list(CPU), None
    problem = cuda_problem()
    if problem is not None:
        return list(CPU), f"predictors.device is cuda but {problem}: built-in models run on the CPU"
    return list(CUDA), None
