"""A built-in model job whose input and output are local files commits its brief statuses
(`waiting for data/model download`, `uploading`) with the next one, at their own times: two
status transactions per job instead of four, and the same timeline. A worker-command job, or a
remote store, still commits each status as it enters it."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from autoinfer.db import Database, utcnow
from autoinfer.errors import Conflict
from autoinfer.jobs.items import ItemRecord, JobItems
from autoinfer.jobs.service import JobService
from autoinfer.jobs.spec import Status, parse_spec
from autoinfer.predictors import PredictorPool
from autoinfer.runner import Cancellation, Runner, RunnerContext
from autoinfer.storage import StorageRegistry

OWNER = "brief-test"


class CountingJobService(JobService):
    """The real job service, noting each status transaction: (status, statuses passed)."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.commits: list[tuple[str, list[str]]] = []
        self.items_with: dict[str, int] = {}  # status → item results committed with it
        self.lone_log_writes = 0  # log lines stored in a transaction of their own

    def append_log(self, job_id: str, lines: list[Any]) -> None:
        super().append_log(job_id, lines)
        self.lone_log_writes += 1

    def transition(
        self,
        job_id: str,
        status: Status,
        *,
        passed: Sequence[tuple[Status, datetime]] = (),
        **kwargs: Any,
    ) -> None:
        super().transition(job_id, status, passed=passed, **kwargs)
        self.commits.append((Status(status).value, [Status(s).value for s, _ in passed]))
        if kwargs.get("items") is not None:
            self.items_with[Status(status).value] = len(kwargs["items"][1])


@pytest.fixture
def jobs(tmp_path: Path) -> Iterator[CountingJobService]:
    db = Database(f"sqlite:///{tmp_path / 'jobs.db'}")
    yield CountingJobService(db)
    db.dispose()


@pytest.fixture(scope="module")
def pool(model_cache: Path) -> Iterator[PredictorPool]:
    with PredictorPool(model_cache, workers=1, batch_size=4, max_wait_ms=10) as shared:
        yield shared


def _claimed(jobs: JobService, spec: dict[str, Any]) -> Any:
    jobs.create(parse_spec(spec))
    [record] = jobs.claim(OWNER, 60)
    return record


def test_a_local_pool_job_commits_its_brief_statuses_with_the_next(
    jobs: CountingJobService, pool: PredictorPool, seed_zip: Path, tmp_path: Path
) -> None:
    spec = {
        "name": "brief",
        "model": {"source_type": "builtin", "source_uri": "efficientnet_lite0"},
        "data": {"input_uri": str(seed_zip), "output_uri": str(tmp_path / "out")},
    }
    record = _claimed(jobs, spec)
    items = JobItems(jobs.db)
    items.record(record.id, [ItemRecord(file="an earlier attempt's.jpg", status="ok")])
    ctx = RunnerContext(
        jobs=jobs,
        storage=StorageRegistry(),
        scratch_root=tmp_path / "scratch",
        predictors=pool,
        items=items,
    )
    assert Runner(ctx, record, OWNER, Cancellation()).run() == "finished"
    assert jobs.commits == [
        ("running", ["waiting for data/model download"]),
        ("finished", ["uploading"]),
    ]
    # Every log line went with a status change, though classifying took over LOG_FLUSH_S
    # (the model loads): the lines after it are followed by a status change at once.
    assert jobs.lone_log_writes == 0
    lines = [line.line for line in jobs.logs(record.id)]
    assert lines[-1] == "finished" and any(line.startswith("classified 5 image") for line in lines)
    # The last results went in with the job's end (earlier ones when FLUSH_S passed while
    # the model loaded), and the earlier attempt's are gone.
    assert list(jobs.items_with) == ["finished"] and jobs.items_with["finished"] >= 1
    assert sorted(item.file for item in items.page(record.id).items) == sorted(
        zipfile.ZipFile(seed_zip).namelist()
    )
    job = jobs.get(record.id)
    assert job.items is not None and job.items.ok == 5
    walked = [t.status for t in job.transitions]
    assert walked[-4:] == ["waiting for data/model download", "running", "uploading", "finished"]
    times = [t.at for t in job.transitions]
    assert times == sorted(times)
    assert (tmp_path / "out" / "brief.zip").is_file()


def test_a_worker_command_job_commits_every_status_as_it_enters_it(
    jobs: CountingJobService, tmp_path: Path
) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "predict.py").write_text("print('ok')\n")
    data = tmp_path / "input.txt"
    data.write_text("hello")
    spec = {
        "name": "commands",
        "model": {"source_type": "local", "source_uri": str(model)},
        "workers": ["python predict.py"],
        "data": {"input_uri": str(data), "output_uri": str(tmp_path / "out")},
    }
    record = _claimed(jobs, spec)
    ctx = RunnerContext(jobs=jobs, storage=StorageRegistry(), scratch_root=tmp_path / "scratch")
    assert Runner(ctx, record, OWNER, Cancellation()).run() == "finished"
    assert jobs.commits == [
        ("waiting for data/model download", []),
        ("running", []),
        ("uploading", []),
        ("finished", []),
    ]


def test_passed_statuses_commit_or_roll_back_with_the_move(jobs: CountingJobService) -> None:
    record = _claimed(jobs, {"name": "j", "data": {"input_uri": "/in", "output_uri": "/o"}})
    earlier = utcnow() - timedelta(seconds=5)
    with pytest.raises(Conflict):  # the main move is refused: nothing of it is stored
        jobs.transition(
            record.id,
            Status.RUNNING,
            owner="someone else",
            passed=[(Status.WAITING_DOWNLOAD, earlier)],
        )
    assert jobs.get(record.id).status == record.status
    jobs.transition(
        record.id, Status.RUNNING, owner=OWNER, passed=[(Status.WAITING_DOWNLOAD, earlier)]
    )
    transitions = jobs.get(record.id).transitions
    assert [t.status for t in transitions[-2:]] == ["waiting for data/model download", "running"]
    assert transitions[-2].at == earlier < transitions[-1].at
