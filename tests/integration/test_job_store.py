"""The job store on a real SQLite file: committed transitions, leases, exactly-once claims."""

import threading
import time
from pathlib import Path

import pytest

from autoinfer.db import Database
from autoinfer.errors import IllegalTransition
from autoinfer.jobs.service import JobService, deterministic_job_id
from autoinfer.jobs.spec import Status, parse_spec


@pytest.fixture
def jobs(tmp_path: Path) -> JobService:
    return JobService(Database(f"sqlite:///{tmp_path / 'jobs.db'}"))


def spec(name: str = "job"):  # type: ignore[no-untyped-def]
    return parse_spec({"name": name, "data": {"input_uri": "/in", "output_uri": "/out"}})


def test_database_uses_wal_mode(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'wal.db'}")
    with db.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_every_transition_is_recorded_with_its_time(jobs: JobService) -> None:
    job, created = jobs.create(spec())
    assert created and job.status == "new"
    [claimed] = jobs.claim("worker-a", 30)
    jobs.transition(job.id, Status.WAITING_DOWNLOAD, owner="worker-a")
    jobs.transition(job.id, Status.RUNNING, owner="worker-a")
    done = jobs.get(job.id)
    assert [t.status for t in done.transitions] == [
        "new",
        "waiting for resources",
        "waiting for data/model download",
        "running",
    ]
    times = [t.at for t in done.transitions]
    assert times == sorted(times) and all(t.tzinfo is not None for t in times)
    assert claimed.attempt == 1


def test_illegal_transition_is_refused_and_nothing_changes(jobs: JobService) -> None:
    job, _ = jobs.create(spec())
    with pytest.raises(IllegalTransition, match="cannot go from 'new' to 'running'"):
        jobs.transition(job.id, Status.RUNNING)
    assert jobs.get(job.id).status == "new"


def test_the_same_deterministic_id_creates_one_job(jobs: JobService) -> None:
    job_id = deterministic_job_id("trigger", "bucket/key/etag")
    first, created_first = jobs.create(spec(), job_id=job_id)
    second, created_second = jobs.create(spec(), job_id=job_id)
    assert created_first and not created_second and first.id == second.id
    assert jobs.list()[1] == 1


def test_concurrent_claimers_get_each_job_exactly_once(jobs: JobService) -> None:
    for index in range(40):
        jobs.create(spec(f"job-{index}"))
    claimed: dict[str, list[str]] = {}
    lock = threading.Lock()

    def claimer(owner: str) -> None:
        while True:
            got = jobs.claim(owner, 30, limit=3)
            if not got:
                return
            with lock:
                for job in got:
                    claimed.setdefault(job.id, []).append(owner)

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(claimed) == 40
    assert all(len(owners) == 1 for owners in claimed.values())


def test_expired_lease_becomes_a_new_attempt_then_fails_when_attempts_run_out(jobs: JobService) -> None:
    job, _ = jobs.create(spec(), max_attempts=2)
    jobs.claim("dead-worker", 0.05)
    time.sleep(0.1)
    assert jobs.recover_expired() == [job.id]
    again = jobs.get(job.id)
    assert again.status == "new" and "lost its executor" in (again.transitions[-1].reason or "")
    [second] = jobs.claim("other-worker", 0.05)
    assert second.attempt == 2
    time.sleep(0.1)
    jobs.recover_expired()
    final = jobs.get(job.id)
    assert final.status == "failed" and "attempt 2 lost its executor" in (final.reason or "")


def test_stop_of_a_queued_job_is_immediate(jobs: JobService) -> None:
    job, _ = jobs.create(spec())
    assert jobs.request_stop(job.id).status == "stopped"
    assert jobs.claim("w", 30) == []


def test_retry_requeues_a_failed_job_as_a_new_attempt(jobs: JobService) -> None:
    job, _ = jobs.create(spec())
    jobs.claim("w", 30)
    jobs.fail_or_retry(job.id, "boom", owner="w", backoff_s=0)
    assert jobs.get(job.id).status == "failed"
    jobs.retry(job.id)
    [again] = jobs.claim("w", 30)
    assert again.attempt == 2
