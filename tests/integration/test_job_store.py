"""The job store on a real SQLite file: committed transitions, leases, exactly-once claims."""

import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from autoinfer.db import Database, utcnow
from autoinfer.errors import IllegalTransition
from autoinfer.jobs.infra import MAX_INFRA_RETRIES
from autoinfer.jobs.service import RETRY_MAX_DELAY_S, JobService, deterministic_job_id
from autoinfer.jobs.spec import Status, parse_spec
from autoinfer.jobs.store import JobRow


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


def test_expired_lease_is_requeued_without_spending_an_attempt(jobs: JobService) -> None:
    job, _ = jobs.create(spec(), max_attempts=2)
    jobs.claim("dead-worker", 0.05)
    time.sleep(0.1)
    assert jobs.recover_expired() == [job.id]
    again = jobs.get(job.id)
    assert again.status == "new" and "lost its executor" in (again.transitions[-1].reason or "")
    assert again.attempt == 0  # the lost attempt is given back
    [second] = jobs.claim("other-worker", 30)
    assert second.attempt == 1


def test_infrastructure_retries_have_their_own_cap(jobs: JobService) -> None:
    """A job whose executor is lost every time (it kills its service, say) still ends, and a
    job of one attempt is retried after a crash all the same."""
    job, _ = jobs.create(spec(), max_attempts=1)
    for retry in range(1, MAX_INFRA_RETRIES + 1):
        [claimed] = jobs.claim(f"dead-{retry}", 30)
        assert claimed.attempt == 1
        assert jobs.recover_expired(owner=f"dead-{retry}") == [job.id]  # its restart
        again = jobs.get(job.id)
        assert again.status == "new" and again.attempt == 0
        reason = again.transitions[-1].reason or ""
        assert reason == (
            f"attempt 1 lost its executor (dead-{retry}); infrastructure retry {retry} of "
            f"{MAX_INFRA_RETRIES}, not counted as an attempt"
        )
    jobs.claim("dead-last", 30)
    jobs.recover_expired(owner="dead-last")
    final = jobs.get(job.id)
    assert final.status == "failed" and final.attempt == 1
    assert final.reason == (
        f"attempt 1 lost its executor (dead-last) after {MAX_INFRA_RETRIES} infrastructure"
        " retry(s): giving up"
    )


def test_a_user_failure_after_an_infrastructure_retry_still_counts(jobs: JobService) -> None:
    job, _ = jobs.create(spec(), max_attempts=1)
    jobs.claim("crashed", 30)
    jobs.recover_expired(owner="crashed")
    jobs.claim("w", 30)
    failed = jobs.fail_or_retry(job.id, "boom", owner="w", backoff_s=0)
    assert failed.status == "failed" and failed.attempt == 1


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


def test_a_failed_attempts_retry_wait_is_capped_and_jittered(jobs: JobService) -> None:
    job, _ = jobs.create(spec(), max_attempts=3)
    jobs.claim("w", 30)
    before = utcnow()
    # An uncapped doubling of a 1000 s backoff would wait 1000 s; the cap keeps it in the
    # jittered upper half of RETRY_MAX_DELAY_S.
    assert jobs.fail_or_retry(job.id, "boom", owner="w", backoff_s=1000).status == "new"
    with jobs.db.session() as session:
        not_before = session.scalar(select(JobRow.not_before).where(JobRow.id == job.id))
    assert not_before is not None
    assert before + timedelta(seconds=RETRY_MAX_DELAY_S / 2) <= not_before
    assert not_before <= utcnow() + timedelta(seconds=RETRY_MAX_DELAY_S)


def test_terminal_hooks_see_the_ended_row_on_every_path(jobs: JobService) -> None:
    seen: list[tuple[str, str]] = []
    jobs.add_terminal_hook(lambda connection, row: seen.append((row.id, row.status)))
    queued, _ = jobs.create(spec("queued"))
    jobs.request_stop(queued.id)  # a move of a job read first (the ORM path)
    running, _ = jobs.create(spec("running"))
    jobs.claim("w", 30)
    for status in (Status.WAITING_DOWNLOAD, Status.RUNNING, Status.UPLOADING, Status.FINISHED):
        jobs.transition(running.id, status, owner="w")  # the hot path
    assert seen == [(queued.id, "stopped"), (running.id, "finished")]
    assert jobs.get(queued.id).transitions[-1].status == "stopped"
