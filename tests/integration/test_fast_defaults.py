"""The shipped defaults are the fast ones: built-in model jobs are not held back by the
`max_jobs` slots that worker commands use, and worker commands still are."""

from __future__ import annotations

import time
from pathlib import Path

from autoinfer.config import Config, ExecutorConfig, PredictorsConfig
from tests.conftest import RunningService
from tests.support.worker_jobs import make_model, spec, wait_terminal

SLEEPER = "import time\ntime.sleep(120)\n"


def _status(api: RunningService, job_id: str) -> str:
    return api.client().jobs.get(job_id).status


def test_built_in_model_jobs_run_while_worker_commands_fill_max_jobs(
    start_service, seed_zip: Path, tmp_path: Path
) -> None:
    api: RunningService = start_service(
        executor=ExecutorConfig(max_jobs=1, lease_s=5),
        predictors=PredictorsConfig(workers=1),
    )
    client = api.client()
    model = make_model(tmp_path / "model", SLEEPER)
    local = {"source_type": "local", "source_uri": str(model)}
    commands = [
        client.jobs.create_from_spec(
            spec(f"sleeper-{n}", str(seed_zip), str(tmp_path / "out"), local, ["python predict.py"])
        )
        for n in range(2)
    ]
    deadline = time.monotonic() + 60
    while not any(_status(api, job.id) == "running" for job in commands):
        assert time.monotonic() < deadline, "no worker command started"
        time.sleep(0.1)
    builtin = {"source_type": "builtin", "source_uri": "efficientnet_lite0"}
    classified = [
        client.jobs.create_from_spec(
            spec(f"classify-{n}", str(seed_zip), str(tmp_path / "out"), builtin, [])
        )
        for n in range(3)
    ]
    for job in classified:
        assert wait_terminal(client, job.id, timeout=300)["status"] == "finished"
    # The one `max_jobs` slot stayed with one worker command the whole time.
    statuses = [_status(api, job.id) for job in commands]
    assert statuses.count("running") == 1, statuses
    for job in commands:
        job.stop()
        wait_terminal(client, job.id)


def test_built_in_jobs_have_their_own_limit_by_default() -> None:
    settings = PredictorsConfig(workers=2, batch_size=16)
    assert settings.job_limit == 32
    assert PredictorsConfig(workers=1, batch_size=4).job_limit == 16
    assert PredictorsConfig(max_jobs=3).job_limit == 3
    assert Config().executor.max_jobs == 4  # worker commands: unchanged
