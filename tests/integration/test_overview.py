"""The overview's history on a real database, with a clock the test sets, and its API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from autoinfer.db import Database
from autoinfer.inbox import Inbox
from autoinfer.jobs.service import JobService
from autoinfer.jobs.spec import JobSpec, Status
from autoinfer.overview import OverviewHistory
from tests.conftest import RunningService
from tests.support.pipeline_world import created

SPEC = JobSpec.model_validate(
    {"name": "charted", "data": {"input_uri": "/in.zip", "output_uri": "/out"}}
)


def test_samples_become_rates_depths_and_jobs_per_minute(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'autoinfer.db'}")
    jobs = JobService(db)
    now = [datetime(2026, 12, 4, 12, 0, 5, tzinfo=UTC)]
    images = [0]
    history = OverviewHistory(db, lambda: images[0], notifications=lambda: 7, clock=lambda: now[0])
    for _ in range(3):
        jobs.create(SPEC)
    Inbox(db).record([created("incoming/a.zip")], "webhook:local")
    history.sample()

    # Ten seconds later: 50 images more, one job finished, one failed for good.
    done, broken = jobs.claim("worker", 60, limit=2)
    for job in (done, broken):
        jobs.transition(job.id, Status.WAITING_DOWNLOAD, owner="worker")
        jobs.transition(job.id, Status.RUNNING, owner="worker")
    jobs.transition(done.id, Status.UPLOADING, owner="worker")
    jobs.transition(done.id, Status.FINISHED, owner="worker")
    jobs.transition(broken.id, Status.FAILED, owner="worker")
    images[0] = 50
    now[0] += timedelta(seconds=10)
    history.sample()
    now[0] += timedelta(minutes=1)  # a minute on: the series adds a sample of now
    series = history.series(minutes=5)

    points = series["points"]
    assert [p["queue"] for p in points] == [3, 1, 1]
    assert [p["inbox"] for p in points] == [1, 1, 1]
    assert [p["images_per_s"] for p in points] == [0.0, 5.0, 0.0]
    assert [p["notifications"] for p in points] == [7, 7, 7]
    assert series["notifications"] is True
    minutes = series["per_minute"]
    assert len(minutes) == 5 and minutes[-1]["minute"].startswith("2026-12-04T12:01:00")
    assert minutes[-2] == {"minute": "2026-12-04T12:00:00+00:00", "finished": 1, "failed": 1}
    assert sum(m["finished"] + m["failed"] for m in minutes) == 2

    # Past the hour, old samples are dropped.
    now[0] += timedelta(hours=2)
    history.sample()
    assert len(history.series()["points"]) == 1


def test_the_overview_api_answers_with_the_last_minutes_and_checks_its_range(
    api: RunningService,
) -> None:
    answer = httpx.get(f"{api.url}/v1/overview?minutes=5", headers=api.headers, timeout=30)
    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert data["minutes"] == 5 and len(data["per_minute"]) == 5 and data["points"]
    assert set(data["points"][-1]) == {"at", "images_per_s", "queue", "inbox", "notifications"}
    for bad in ("0", "61", "x"):
        refused = httpx.get(f"{api.url}/v1/overview?minutes={bad}", headers=api.headers)
        assert refused.status_code == 422, bad
    assert httpx.get(f"{api.url}/v1/overview").status_code == 401
