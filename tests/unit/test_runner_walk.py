"""The runner's state walk without a service: one attempt on a real job store (SQLite), real
local storage and the real sandbox, checked through the transitions it commits."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from autoinfer.db import Database
from autoinfer.jobs.service import JobService
from autoinfer.jobs.spec import Status, parse_spec
from autoinfer.runner import Cancellation, Runner, RunnerContext
from autoinfer.storage import StorageRegistry

OWNER = "walk-test"


@pytest.fixture
def jobs(tmp_path: Path) -> JobService:
    return JobService(Database(f"sqlite:///{tmp_path / 'jobs.db'}"))


def attempt(jobs: JobService, tmp_path: Path, script: str, *, max_attempts: int = 1) -> str:
    """Create a job whose worker runs `script`, claim it, run one attempt; its end status."""
    model = tmp_path / "model"
    model.mkdir(exist_ok=True)
    (model / "predict.py").write_text(script)
    data = tmp_path / "input.zip"
    with zipfile.ZipFile(data, "w") as archive:
        archive.writestr("a.txt", "hello")
    spec = parse_spec(
        {
            "name": "walk",
            "model": {"source_type": "local", "source_uri": str(model)},
            "workers": ["python predict.py"],
            "data": {"input_uri": str(data), "output_uri": str(tmp_path / "out")},
        }
    )
    jobs.create(spec, max_attempts=max_attempts)
    [record] = jobs.claim(OWNER, 60)
    ctx = RunnerContext(jobs=jobs, storage=StorageRegistry(), scratch_root=tmp_path / "scratch")
    return Runner(ctx, record, OWNER, Cancellation()).run()


def walk(jobs: JobService) -> list[str]:
    [job], _ = jobs.list()
    return [t.status for t in job.transitions]


def test_a_good_attempt_walks_every_status_and_uploads_its_output(
    jobs: JobService, tmp_path: Path
) -> None:
    script = (
        "import os, pathlib\n"
        "names = sorted(p.name for p in pathlib.Path(os.environ['AUTOINFER_DATA_PATH']).iterdir())\n"
        "pathlib.Path(os.environ['AUTOINFER_OUTPUT_PATH'], 'names.txt').write_text(' '.join(names))\n"
    )
    assert attempt(jobs, tmp_path, script) == "finished"
    assert walk(jobs) == [
        Status.NEW,
        Status.WAITING_RESOURCES,
        Status.WAITING_DOWNLOAD,
        Status.RUNNING,
        Status.UPLOADING,
        Status.FINISHED,
    ]
    [job], _ = jobs.list()
    assert job.output_location == str(tmp_path / "out" / "walk.zip")
    with zipfile.ZipFile(tmp_path / "out" / "walk.zip") as archive:
        assert archive.read("names.txt") == b"a.txt"
    assert not any((tmp_path / "scratch").iterdir())  # the attempt's folder is removed


def test_a_failing_worker_fails_the_job_with_its_last_stderr_line(
    jobs: JobService, tmp_path: Path
) -> None:
    script = "import sys\nprint('something broke', file=sys.stderr)\nsys.exit(3)\n"
    assert attempt(jobs, tmp_path, script) == "failed"
    [job], _ = jobs.list()
    assert job.status == "failed"
    assert job.reason == ("worker command 'python predict.py' exited with code 3: something broke")
    assert walk(jobs)[-2:] == [Status.RUNNING, Status.FAILED]


def test_a_failed_attempt_with_attempts_left_goes_back_to_the_queue(
    jobs: JobService, tmp_path: Path
) -> None:
    assert attempt(jobs, tmp_path, "raise SystemExit(1)\n", max_attempts=2) == "failed"
    [job], _ = jobs.list()
    assert job.status == "new" and job.attempt == 1
    assert walk(jobs)[-1] == Status.NEW
