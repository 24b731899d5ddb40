"""`python -m bench --gpu`: the GPU path's figures, or one plain line saying why there are none.

Measuring needs ONNX Runtime's CUDA execution provider (the `onnxruntime-gpu` package) and a
CUDA device. The serving side of the GPU path (built-in models on CUDA in the warm pool) is not
built yet; this entry point exists so that a GPU machine can be checked for it.
"""

from __future__ import annotations

from pathlib import Path

from autoinfer.predictors.devices import cuda_problem


def main(cache: Path | None) -> int:
    problem = cuda_problem()
    if problem is not None:
        print(f"bench --gpu: no GPU here: {problem}; nothing measured")
        return 0
    print("bench --gpu: a CUDA GPU is present, but the GPU path is not implemented yet")
    return 1
