"""The job store, the inbox, keys and secrets on a real PostgreSQL server.

Each "replica" here is its own `Database` (its own engine and connection pool) on one shared
database, as two `autoinfer serve` processes would be.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from cryptography.fernet import Fernet
from sqlalchemy import inspect

from autoinfer.db import Database
from autoinfer.events.model import object_created
from autoinfer.inbox import Inbox, Outcome, Settlement
from autoinfer.jobs.service import JobService
from autoinfer.jobs.spec import Status, parse_spec
from autoinfer.keys import Keys
from autoinfer.secrets import Secrets


def spec(name: str = "job"):  # type: ignore[no-untyped-def]
    return parse_spec({"name": name, "data": {"input_uri": "/in", "output_uri": "/out"}})


def run_together(count: int, work: Callable[[int], Any]) -> list[Any]:
    """Run work(0..count-1) in threads released at the same moment; re-raise their errors."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait()
            results[index] = work(index)
        except BaseException as error:  # noqa: BLE001 - handed to the test thread
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    if errors:
        raise errors[0]
    return results


def test_replicas_starting_together_on_an_empty_database_create_the_schema_once(
    pg_url: str,
) -> None:
    databases = run_together(4, lambda _: Database(pg_url))
    tables = set(inspect(databases[0].engine).get_table_names())
    assert {"jobs", "job_transitions", "job_logs", "events", "api_keys", "secrets"} <= tables
    for db in databases:
        db.dispose()


def test_jobs_keep_their_json_and_aware_timestamps_on_postgresql(pg_url: str) -> None:
    jobs = JobService(Database(pg_url))
    job, created = jobs.create(spec("é-job"))
    jobs.claim("w", 30)
    jobs.set_result(job.id, output_location="/out/x.zip", model_info={"labels": ["a", "ü"], "n": 5})
    jobs.append_log(job.id, [(datetime.now(UTC), "stdout", "line ✓")])
    again = jobs.get(job.id)
    assert created and again.spec["name"] == "é-job" and again.spec["data"]["input_uri"] == "/in"
    assert again.model_info == {"labels": ["a", "ü"], "n": 5}
    assert all(t.at.tzinfo is not None for t in again.transitions)
    assert again.created_at <= again.transitions[-1].at
    assert [line.line for line in jobs.logs(job.id)] == ["line ✓"]
    assert jobs.counts_by_status() == {"waiting for resources": 1}


def test_each_job_is_claimed_by_exactly_one_of_several_replicas(pg_url: str) -> None:
    replicas = [JobService(Database(pg_url)) for _ in range(4)]
    for index in range(60):
        replicas[0].create(spec(f"job-{index}"))
    claimed: dict[str, list[str]] = {}
    lock = threading.Lock()

    def claimer(index: int) -> None:
        owner = f"replica-{index}"
        while got := replicas[index].claim(owner, 30, limit=3):
            with lock:
                for job in got:
                    claimed.setdefault(job.id, []).append(owner)

    run_together(4, claimer)
    assert len(claimed) == 60
    assert all(len(owners) == 1 for owners in claimed.values())
    assert replicas[0].counts_by_status() == {"waiting for resources": 60}


def test_one_deterministic_job_when_replicas_create_it_at_once(pg_url: str) -> None:
    replicas = [JobService(Database(pg_url)) for _ in range(4)]
    results = run_together(4, lambda i: replicas[i].create(spec(), job_id="same-id"))
    assert sorted(created for _, created in results) == [False, False, False, True]
    assert replicas[0].list()[1] == 1


def test_an_expired_lease_is_taken_over_once_when_replicas_recover_together(pg_url: str) -> None:
    replicas = [JobService(Database(pg_url)) for _ in range(4)]
    ids = [replicas[0].create(spec(f"job-{i}"), max_attempts=3)[0].id for i in range(20)]
    assert len(replicas[0].claim("dead-replica", 0.05, limit=20)) == 20
    time.sleep(0.2)
    recovered = run_together(4, lambda i: replicas[i].recover_expired())
    assert sorted(job_id for batch in recovered for job_id in batch) == sorted(ids)
    for job_id in ids:
        job = replicas[0].get(job_id)
        # An infrastructure retry: the lost attempt is given back.
        assert job.status == Status.NEW.value and job.attempt == 0
        # Exactly one requeue: new → claimed → new.
        assert [t.status for t in job.transitions] == ["new", "waiting for resources", "new"]
        assert (job.transitions[-1].reason or "").startswith(
            "attempt 1 lost its executor (dead-replica); infrastructure retry 1 of"
        )
    [taken] = replicas[1].claim("live-replica", 30)
    assert taken.attempt == 1


def test_a_live_lease_is_not_taken_over(pg_url: str) -> None:
    jobs = JobService(Database(pg_url))
    job, _ = jobs.create(spec())
    jobs.claim("live", 30)
    assert jobs.recover_expired() == []
    assert jobs.get(job.id).status == "waiting for resources"


def events(count: int, bucket: str = "data") -> list[Any]:
    modified = datetime(2026, 1, 1, tzinfo=UTC)
    return [
        object_created(
            bucket, f"incoming/img-{i}.zip", size=10, etag=f"etag-{i}", modified=modified
        )
        for i in range(count)
    ]


def test_events_delivered_to_several_replicas_at_once_are_stored_once(pg_url: str) -> None:
    replicas = [Inbox(Database(pg_url)) for _ in range(3)]
    batch = events(50)
    # Each replica gets the whole batch, in its own order (as separate notifications would be).
    orders = [batch, list(reversed(batch)), batch[25:] + batch[:25]]
    recorded = run_together(3, lambda i: replicas[i].record(orders[i], f"webhook:replica-{i}"))
    for order, records in zip(orders, recorded, strict=True):
        assert [r.key for r in records] == [e.key for e in order]
    outcomes = [r.outcome for records in recorded for r in records]
    assert outcomes.count(Outcome.PENDING) == 50 and outcomes.count(Outcome.DUPLICATE) == 100
    originals = {r.id: r for records in recorded for r in records if r.outcome == Outcome.PENDING}
    assert all(
        r.duplicate_of in originals for records in recorded for r in records if r.duplicate_of
    )
    # Every delivery is counted on its original, none lost to a concurrent update.
    assert {replicas[0].get(event_id).deliveries for event_id in originals} == {3}
    counts = replicas[0].counts()
    assert sum(n for (_, outcome), n in counts.items() if outcome == "pending") == 50
    assert sum(n for (_, outcome), n in counts.items() if outcome == "duplicate") == 100


def test_an_event_is_settled_by_one_replica_only(pg_url: str) -> None:
    replicas = [Inbox(Database(pg_url)) for _ in range(4)]
    [record] = replicas[0].record(events(1), "webhook")
    results = run_together(
        4,
        lambda i: replicas[i].mark_many([Settlement(record.id, Outcome.IGNORED, reason=f"r{i}")])[
            0
        ],
    )
    assert sorted(results) == [False, False, False, True]
    assert replicas[0].get(record.id).outcome == Outcome.IGNORED


def test_keys_and_secrets_work_on_postgresql(pg_url: str) -> None:
    db = Database(pg_url)
    keys = Keys(db)
    created = keys.create("ci", "submit")
    assert keys.authenticate(created.key).name == "ci"
    keys.revoke("ci")
    assert keys.create("ci", "read").name == "ci"  # the partial unique index frees the name
    secrets = Secrets(db, Fernet(Fernet.generate_key()))
    secrets.set("minio", "AKIA:secret")
    assert secrets.resolve("minio") == "AKIA:secret"


def test_record_fields_at_the_column_limits_are_stored_and_past_them_rejected_by_name(
    pg_url: str,
) -> None:
    from autoinfer.events.model import (
        MAX_BUCKET_CHARS,
        MAX_ETAG_CHARS,
        MAX_EVENT_NAME_CHARS,
        MAX_SEQUENCER_CHARS,
        MAX_VERSION_ID_CHARS,
        parse_notification,
    )

    def record(extra: int) -> dict[str, Any]:
        return {
            "eventName": "ObjectCreated:" + "P" * (MAX_EVENT_NAME_CHARS - 14 + extra),
            "eventTime": "2026-11-24T10:00:00Z",
            "s3": {
                "bucket": {"name": "b" * (MAX_BUCKET_CHARS + extra)},
                "object": {
                    "key": "k" * 1024,
                    "size": 2**63 - 1 + extra,
                    "eTag": "e" * (MAX_ETAG_CHARS + extra),
                    "versionId": "v" * (MAX_VERSION_ID_CHARS + extra),
                    "sequencer": "s" * (MAX_SEQUENCER_CHARS + extra),
                },
            },
        }

    notification = parse_notification({"Records": [record(0), record(1)]})
    [stored] = Inbox(Database(pg_url)).record(notification.events, "webhook:pg")
    assert stored.size == 2**63 - 1 and len(stored.version_id or "") == MAX_VERSION_ID_CHARS
    [rejected] = notification.rejected
    assert rejected.index == 1 and rejected.reason.startswith("Records[1].eventName: 101 char")
