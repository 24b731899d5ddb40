"""Retention on a real SQLite database and a real gallery folder, with a clock the test sets:
expired jobs, logs, thumbnails and events go; live work and recent rows stay; a redelivered
event whose inbox row was removed starts no second job while its job is kept."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select

from autoinfer.config import RetentionConfig
from autoinfer.db import Database, utcnow
from autoinfer.gallery import Gallery
from autoinfer.inbox import EventRow, Outcome
from autoinfer.jobs.records import JobRecord
from autoinfer.jobs.service import JobService
from autoinfer.jobs.spec import JobSpec, Status
from autoinfer.jobs.store import LogRow, TransitionRow
from autoinfer.retention import RetentionSweep
from tests.support.pipeline_world import World, created

SPEC = JobSpec.model_validate(
    {
        "name": "retained",
        "model": {"source_type": "builtin", "source_uri": "efficientnet_lite0"},
        "data": {"input_uri": "/in.zip", "output_uri": "/out"},
    }
)
DAY = timedelta(days=1)


def _ended(jobs: JobService, status: Status = Status.FINISHED, lines: int = 3) -> JobRecord:
    """A job that ran (claimed, logged) and ended with `status`."""
    job, _ = jobs.create(SPEC)
    [claimed] = jobs.claim("worker", 60)
    assert claimed.id == job.id
    jobs.append_log(job.id, [(utcnow(), "stdout", f"line {i}") for i in range(lines)])
    jobs.transition(job.id, Status.WAITING_DOWNLOAD, owner="worker")
    jobs.transition(job.id, Status.RUNNING, owner="worker")
    if status == Status.FAILED:
        jobs.fail_or_retry(job.id, "broken", owner="worker", backoff_s=0, retry=False)
    else:
        jobs.transition(job.id, Status.UPLOADING, owner="worker")
        jobs.transition(job.id, status, owner="worker")
    return jobs.get(job.id)


def _running(jobs: JobService) -> JobRecord:
    job, _ = jobs.create(SPEC)
    jobs.claim("worker", 3600)
    jobs.append_log(job.id, [(utcnow(), "stdout", "working")])
    jobs.transition(job.id, Status.WAITING_DOWNLOAD, owner="worker")
    jobs.transition(job.id, Status.RUNNING, owner="worker")
    return jobs.get(job.id)


def _after(moment: datetime) -> None:
    """Return once the clock has moved past `moment` (timestamps must differ; no sleeping)."""
    while utcnow() <= moment:
        pass


def _save_gallery(gallery: Gallery, job_id: str, tmp_path: Path, age: timedelta) -> None:
    (tmp_path / "empty-output").mkdir(exist_ok=True)
    gallery.save(job_id, tmp_path, tmp_path / "empty-output")
    stamp = (utcnow() - age).timestamp()
    os.utime(gallery.folder(job_id), (stamp, stamp))


def _count(db: Database, column, *where) -> int:  # type: ignore[no-untyped-def]
    with db.session() as session:
        return session.scalar(select(func.count(column)).where(*where)) or 0


def _sweep(
    world_db: Database, gallery: Gallery, clock: Callable[[], datetime], **days: float
) -> RetentionSweep:
    config = RetentionConfig(**{"batch_size": 2, **days})  # tiny batches: several per sweep
    return RetentionSweep(world_db, gallery, config, clock=clock)


def test_expired_ended_jobs_go_with_their_logs_and_galleries_and_live_work_stays(
    tmp_path: Path,
) -> None:
    db = Database(f"sqlite:///{tmp_path / 'autoinfer.db'}")
    jobs = JobService(db)
    gallery = Gallery(tmp_path / "gallery")
    old = [_ended(jobs), _ended(jobs, Status.FAILED), _ended(jobs), _ended(jobs)]
    old_running = _running(jobs)
    # Failed, then retried with a backoff: `new`, waiting for its turn.
    old_waiting = jobs.retry(_ended(jobs, Status.FAILED).id, delay_s=1e6)
    for job in old:
        _save_gallery(gallery, job.id, tmp_path, age=timedelta(hours=1))
    _save_gallery(gallery, old_running.id, tmp_path, age=10 * DAY)  # a retry that runs again
    middle = utcnow()
    _after(middle)
    recent = _ended(jobs)
    _save_gallery(gallery, recent.id, tmp_path, age=timedelta(0))

    # Thirty days after `middle`, with jobs kept 30 days: what ended before `middle` goes.
    sweep = _sweep(
        db,
        gallery,
        lambda: middle + 30 * DAY,
        jobs_days=30,
        logs_days=0,
        gallery_days=0,
        events_days=0,
    )
    report = sweep.run()

    assert report.jobs == len(old)
    remaining = {job.id for job in jobs.list(limit=100)[0]}
    assert remaining == {old_running.id, old_waiting.id, recent.id}
    for job in old:
        assert _count(db, LogRow.id, LogRow.job_id == job.id) == 0
        assert _count(db, TransitionRow.id, TransitionRow.job_id == job.id) == 0
        assert not gallery.folder(job.id).exists()
    assert _count(db, LogRow.id, LogRow.job_id == old_running.id) == 1
    assert _count(db, LogRow.id, LogRow.job_id == recent.id) == 3
    assert gallery.folder(recent.id).exists()
    assert gallery.folder(old_running.id).exists()
    # The live job still moves on normally.
    jobs.transition(old_running.id, Status.STOPPED, owner="worker")
    assert sweep.run().jobs == 0  # it ended now: not expired yet


def test_logs_and_galleries_expire_before_the_job_records(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'autoinfer.db'}")
    jobs = JobService(db)
    gallery = Gallery(tmp_path / "gallery")
    old = _ended(jobs, lines=5)
    running = _running(jobs)
    _save_gallery(gallery, old.id, tmp_path, age=8 * DAY)
    _save_gallery(gallery, running.id, tmp_path, age=8 * DAY)
    _save_gallery(gallery, "0" * 32, tmp_path, age=8 * DAY)  # an orphan: its job is gone
    _save_gallery(gallery, "1" * 32, tmp_path, age=DAY)  # recent
    middle = utcnow()
    _after(middle)
    recent = _ended(jobs, lines=2)

    sweep = _sweep(
        db,
        gallery,
        lambda: middle + 2 * DAY,
        jobs_days=30,
        logs_days=2,
        gallery_days=7,
        events_days=0,
    )
    report = sweep.run()

    assert (report.jobs, report.log_lines, report.galleries) == (0, 5, 2)
    assert jobs.get(old.id).status == "finished"  # the record stays, its log is gone
    assert jobs.logs(old.id) == []
    assert [line.line for line in jobs.logs(running.id)] == ["working"]
    assert len(jobs.logs(recent.id)) == 2
    assert {job_id for job_id, _ in gallery.saved()} == {running.id, "1" * 32}


def test_zero_days_keeps_everything(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'autoinfer.db'}")
    jobs = JobService(db)
    gallery = Gallery(tmp_path / "gallery")
    job = _ended(jobs)
    _save_gallery(gallery, job.id, tmp_path, age=1000 * DAY)
    sweep = _sweep(
        db,
        gallery,
        lambda: utcnow() + 1000 * DAY,
        jobs_days=0,
        logs_days=0,
        gallery_days=0,
        events_days=0,
    )
    assert sweep.run().total == 0
    assert len(jobs.logs(job.id)) == 3
    assert gallery.folder(job.id).exists()


def test_settled_events_expire_pending_ones_stay_and_a_redelivery_makes_no_second_job(
    tmp_path: Path,
) -> None:
    world = World(tmp_path)
    gallery = Gallery(tmp_path / "gallery")
    [matched] = world.pipeline.ingest([created("incoming/a.zip")], "webhook:local")
    [ignored] = world.pipeline.ingest([created("elsewhere/b.zip")], "webhook:local")
    [duplicate] = world.pipeline.ingest([created("incoming/a.zip")], "webhook:local")
    [pending] = world.pipeline.inbox.record([created("incoming/c.zip")], "webhook:local")
    assert (matched.outcome, ignored.outcome, duplicate.outcome) == (
        "matched",
        "ignored",
        "duplicate",
    )
    job_id = world.pipeline.inbox.get(matched.id).job_id
    middle = utcnow()
    _after(middle)
    [recent] = world.pipeline.ingest([created("incoming/d.zip")], "webhook:local")

    sweep = _sweep(
        world.db,
        gallery,
        lambda: middle + 30 * DAY,
        jobs_days=0,
        logs_days=0,
        gallery_days=0,
        events_days=30,
    )
    assert sweep.run().events == 3

    left = {e.id: e.outcome for e in world.pipeline.inbox.list(limit=100)[0]}
    assert left == {pending.id: Outcome.PENDING.value, recent.id: Outcome.MATCHED.value}
    # Its dispatch rows went with it.
    assert world.pipeline.inbox.trigger_counts()["classify-incoming"]["matched"] == 1

    # A redelivery of the removed event: stored as a new event, settled on the job it made
    # before (the job id derives from the trigger and the event), so no second job.
    jobs_before = world.jobs.list(limit=100)[1]
    [again] = world.pipeline.ingest([created("incoming/a.zip")], "webhook:local")
    assert again.outcome == Outcome.MATCHED.value and again.id != matched.id
    assert again.job_id == job_id
    assert world.jobs.list(limit=100)[1] == jobs_before


def test_a_redelivery_after_both_event_and_job_expired_makes_a_new_job(tmp_path: Path) -> None:
    """The documented limit: duplicate protection lasts as long as the event or its job."""
    world = World(tmp_path)
    gallery = Gallery(tmp_path / "gallery")
    [first] = world.pipeline.ingest([created("incoming/a.zip")], "webhook:local")
    job_id = world.pipeline.inbox.get(first.id).job_id
    [claimed] = world.jobs.claim("worker", 60)
    world.jobs.transition(claimed.id, Status.STOPPED, owner="worker")
    middle = utcnow()
    _after(middle)
    sweep = _sweep(
        world.db,
        gallery,
        lambda: middle + 30 * DAY,
        jobs_days=30,
        logs_days=0,
        gallery_days=0,
        events_days=30,
    )
    report = sweep.run()
    assert (report.jobs, report.events) == (1, 1)
    assert _count(world.db, EventRow.id) == 0

    [again] = world.pipeline.ingest([created("incoming/a.zip")], "webhook:local")
    assert again.outcome == Outcome.MATCHED.value
    assert world.jobs.get(job_id).status == "new"  # the same id, made again
