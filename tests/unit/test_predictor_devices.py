"""`predictors.device`: CPU by default; CUDA asked for on a machine without it says why in one
line and runs on the CPU."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from autoinfer.config import PredictorsConfig
from autoinfer.predictors.devices import CPU, cuda_problem, select_providers
from autoinfer.predictors.pool import PredictorPool


def test_cpu_is_the_default_and_needs_no_words() -> None:
    assert PredictorsConfig().device == "cpu"
    assert select_providers("cpu") == (CPU, None)


@pytest.mark.skipif(cuda_problem() is None, reason="this machine has a CUDA GPU")
def test_cuda_without_a_gpu_runs_on_the_cpu_and_says_why_in_one_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    providers, note = select_providers("cuda")
    assert providers == CPU
    assert note is not None and "\n" not in note
    assert note.startswith("predictors.device is cuda but ") and note.endswith("on the CPU")
    with caplog.at_level(logging.WARNING, logger="autoinfer.predictors"):
        pool = PredictorPool(tmp_path, workers=1, device="cuda")
    pool.close()
    assert pool.providers == CPU
    assert [r.getMessage() for r in caplog.records] == [note]
