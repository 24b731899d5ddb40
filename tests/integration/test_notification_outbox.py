"""The notification outbox on a real SQLite file and a real PostgreSQL server: written in the
transaction of a job's end (and only of its end), claimed and retried on an injected clock,
given up after its time."""

from __future__ import annotations

import random
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection

from autoinfer.db import Database
from autoinfer.jobs.items import ItemRecord, JobItems
from autoinfer.jobs.service import JobResult, JobService
from autoinfer.jobs.spec import Status, parse_spec
from autoinfer.notifications.config import WebhookTarget
from autoinfer.notifications.delivery import NotificationDelivery
from autoinfer.notifications.outbox import Outbox
from autoinfer.notifications.senders import WebhookSender
from tests.s3_server import free_port
from tests.support.webhook_receiver import WebhookReceiver, new_secret


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        database = Database(f"sqlite:///{tmp_path / 'outbox.db'}")
    else:
        database = Database(request.getfixturevalue("pg_url"))
    yield database
    database.dispose()


def _target(url: str, secret: str, **options: Any) -> WebhookTarget:
    return WebhookTarget(name="hook", url=url, secret=secret, **options)


def _ended_job(jobs: JobService, status: Status = Status.FINISHED) -> str:
    job, _ = jobs.create(
        parse_spec({"name": "j", "data": {"input_uri": "/in", "output_uri": "/o"}})
    )
    jobs.claim("me", 30)
    jobs.transition(job.id, Status.WAITING_DOWNLOAD, owner="me")
    jobs.transition(job.id, Status.RUNNING, owner="me")
    jobs.transition(job.id, Status.UPLOADING, owner="me")
    result = JobResult("/o/j.zip", {"name": "m"}) if status == Status.FINISHED else None
    jobs.transition(job.id, status, owner="me", result=result, reason="why")
    return job.id


def test_a_job_end_and_its_notification_commit_together(db: Database) -> None:
    jobs = JobService(db)
    outbox = Outbox(db, [_target("http://127.0.0.1:9/", new_secret())])
    jobs.add_terminal_hook(outbox.enqueue)
    job, _ = jobs.create(
        parse_spec({"name": "j", "data": {"input_uri": "/in", "output_uri": "/o"}})
    )
    jobs.claim("me", 30)
    JobItems(db).record(job.id, [ItemRecord(file="a.jpg", status="ok")])

    failing = [True]

    def broken(connection: Connection, row: Any) -> None:
        if failing:
            raise RuntimeError("the outbox write failed")

    jobs.add_terminal_hook(broken)
    with pytest.raises(RuntimeError):
        jobs.transition(job.id, Status.STOPPED, owner="me", reason="stop")
    assert jobs.get(job.id).status == "waiting for resources"  # rolled back with the outbox
    assert outbox.list()[1] == 0

    failing.clear()
    jobs.transition(job.id, Status.STOPPED, owner="me", reason="stop")
    (record,), total = outbox.list()
    assert total == 1 and record.event_type == "job.stopped" and record.status == "pending"
    body = outbox.get(record.id).body
    assert body is not None
    assert body["data"]["reason"] == "stop" and body["data"]["items"] == {"ok": 1, "error": 0}


def test_a_failed_attempt_that_is_retried_sends_nothing_the_last_one_sends_job_failed(
    db: Database,
) -> None:
    jobs = JobService(db)
    outbox = Outbox(db, [_target("http://127.0.0.1:9/", new_secret())])
    jobs.add_terminal_hook(outbox.enqueue)
    job, _ = jobs.create(
        parse_spec({"name": "j", "data": {"input_uri": "/in", "output_uri": "/o"}}), max_attempts=2
    )
    jobs.claim("me", 30)
    assert jobs.fail_or_retry(job.id, "first", owner="me", backoff_s=0).status == "new"
    assert outbox.list()[1] == 0
    jobs.claim("me", 30)
    assert jobs.fail_or_retry(job.id, "second", owner="me", backoff_s=0).status == "failed"
    (record,), _ = outbox.list()
    assert record.event_type == "job.failed"
    assert outbox.get(record.id).body["data"]["reason"] == "second"  # type: ignore[index]


def test_a_queued_job_stopped_on_request_sends_job_stopped_and_filters_apply(db: Database) -> None:
    jobs = JobService(db)
    finished_only = WebhookTarget(
        name="done", url="http://127.0.0.1:9/", secret=new_secret(), events=["job.finished"]
    )
    everything = _target("http://127.0.0.1:9/", new_secret())
    outbox = Outbox(db, [finished_only, everything])
    jobs.add_terminal_hook(outbox.enqueue)
    job, _ = jobs.create(
        parse_spec({"name": "j", "data": {"input_uri": "/in", "output_uri": "/o"}})
    )
    jobs.request_stop(job.id)
    records, _ = outbox.list()
    assert [(r.target, r.event_type) for r in records] == [("hook", "job.stopped")]


def test_an_unreachable_target_is_retried_with_growing_waits_then_given_up(db: Database) -> None:
    clock = Clock()
    target = _target(
        f"http://127.0.0.1:{free_port()}/",
        new_secret(),
        backoff_s=10,
        max_backoff_s=40,
        retry_for_s=120,
    )
    jobs = JobService(db)
    outbox = Outbox(db, [target], clock=clock)
    jobs.add_terminal_hook(outbox.enqueue)
    sender = WebhookSender(target.url, target.secret, timeout_s=2, clock=clock)
    delivery = NotificationDelivery(
        outbox, {"hook": target}, {"hook": sender}, rng=random.Random(1)
    )
    _ended_job(jobs)

    waits = []
    while True:
        assert delivery.run_once() == 1
        (record,), _ = outbox.list()
        if record.status == "failed":
            break
        wait = (record.next_attempt_at - clock.now).total_seconds()  # type: ignore[operator]
        waits.append(wait)
        clock.advance(wait - 0.001)
        assert delivery.run_once() == 0, "attempted before its time"
        clock.advance(0.001)
    limits = [10, 20, 40, 40, 40, 40][: len(waits)]
    assert all(limit / 2 <= wait <= limit for wait, limit in zip(waits, limits, strict=True))
    assert sum(waits) <= 120 < sum(waits) + 40
    assert record.attempts == len(waits) + 1
    assert record.last_error.startswith(f"gave up after {record.attempts} attempt(s)")  # type: ignore[union-attr]
    assert dict(delivery.outcomes) == {"retry": len(waits), "failed": 1}
    sender.close()


def test_a_notification_for_a_target_no_longer_configured_fails_saying_so(db: Database) -> None:
    jobs = JobService(db)
    old = Outbox(db, [_target("http://127.0.0.1:9/", new_secret())])
    jobs.add_terminal_hook(old.enqueue)
    _ended_job(jobs, Status.FAILED)
    delivery = NotificationDelivery(Outbox(db, []), {}, {})
    assert delivery.run_once() == 1
    (record,), _ = old.list()
    assert record.status == "failed"
    assert record.last_error == "target 'hook' is no longer configured"


def test_a_redelivered_notification_keeps_its_webhook_id(db: Database) -> None:
    secret = new_secret()
    receiver = WebhookReceiver(secret).start()
    try:
        target = _target(receiver.url, secret)
        jobs = JobService(db)
        outbox = Outbox(db, [target])
        jobs.add_terminal_hook(outbox.enqueue)
        delivery = NotificationDelivery(
            outbox, {"hook": target}, {"hook": WebhookSender(target.url, secret)}
        )
        _ended_job(jobs)
        assert delivery.run_once() == 1
        (record,), _ = outbox.list(status="delivered")
        outbox.redeliver(record.id, retry_for_s=60)
        assert delivery.run_once() == 1
        assert [d.webhook_id for d in receiver.deliveries] == [record.webhook_id] * 2
        assert outbox.get(record.id).status == "delivered"
        delivery.stop()
    finally:
        receiver.stop()


def test_two_replicas_delivering_at_once_send_each_notification_once(
    db: Database, tmp_path: Path
) -> None:
    secret = new_secret()
    receiver = WebhookReceiver(secret).start()
    try:
        target = _target(receiver.url, secret)
        jobs = JobService(db)
        writer = Outbox(db, [target])
        jobs.add_terminal_hook(writer.enqueue)
        for _ in range(12):
            _ended_job(jobs)
        replicas = [
            NotificationDelivery(
                Outbox(db, [target]), {"hook": target}, {"hook": WebhookSender(target.url, secret)}
            )
            for _ in range(2)
        ]
        with ThreadPoolExecutor(2) as pool:
            while writer.counts().get("pending"):
                list(pool.map(lambda replica: replica.run_once(), replicas))
        assert len(receiver.deliveries) == 12
        assert len(receiver.webhook_ids()) == 12
        assert writer.counts() == {"delivered": 12}
        for replica in replicas:
            replica.stop()
    finally:
        receiver.stop()
