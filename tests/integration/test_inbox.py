"""The inbox and the pipeline's dispatch, on a real SQLite database: exactly one job per object."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from autoinfer.errors import ConfigError
from autoinfer.events.model import object_created
from autoinfer.inbox import Inbox, Outcome
from tests.support.pipeline_world import TRIGGER, World, created
from tests.support.waiting import wait_until


def test_new_object_event_creates_its_job_from_the_template(tmp_path: Path) -> None:
    world = World(tmp_path)
    [record] = world.pipeline.ingest([created()], "webhook:local")
    assert record.outcome == "matched"
    assert record.trigger == "classify-incoming"
    job = world.jobs.get(record.job_id)  # type: ignore[arg-type]
    assert job.name == "images-X"
    assert job.source == "trigger:classify-incoming"
    assert job.event_id == str(record.id)
    assert job.max_attempts == 3
    assert (
        job.spec["data"]["input_uri"] == (tmp_path / "buckets/data/incoming/images-X.zip").as_uri()
    )
    assert job.spec["data"]["output_uri"] == (tmp_path / "buckets/data/processed").as_uri()
    assert world.woken == 1


def test_repeated_delivery_is_recorded_as_duplicate_and_starts_nothing(tmp_path: Path) -> None:
    world = World(tmp_path)
    first = world.pipeline.ingest([created()], "webhook:local")[0]
    again = world.pipeline.ingest(
        [created(modified=datetime(2026, 1, 2, tzinfo=UTC))], "watch:local"
    )[0]
    assert again.outcome == "duplicate"
    assert again.duplicate_of == first.id
    assert again.job_id is None
    assert world.jobs.list()[1] == 1
    assert world.pipeline.inbox.get(first.id).deliveries == 2
    events, total = world.pipeline.inbox.list(outcome="duplicate")
    assert total == 1 and events[0].id == again.id


def test_new_content_of_the_same_key_is_a_new_object(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.pipeline.ingest([created(etag="v1")], "webhook:local")
    [second] = world.pipeline.ingest([created(etag="v2")], "webhook:local")
    assert second.outcome == "matched"
    assert world.jobs.list()[1] == 2


def test_duplicates_within_one_notification_are_caught(tmp_path: Path) -> None:
    world = World(tmp_path)
    records = world.pipeline.ingest([created(), created()], "webhook:local")
    assert [r.outcome for r in records] == ["matched", "duplicate"]


def test_concurrent_deliveries_of_one_event_start_one_job(tmp_path: Path) -> None:
    world = World(tmp_path)
    barrier = threading.Barrier(8)
    errors: list[Exception] = []

    def deliver(n: int) -> None:
        try:
            barrier.wait()
            world.pipeline.ingest([created()], f"source-{n % 2}")
        except Exception as error:  # collected: asserted empty below
            errors.append(error)
            raise

    threads = [threading.Thread(target=deliver, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    outcomes = sorted(e.outcome for e in world.pipeline.inbox.list()[0])
    assert outcomes == ["duplicate"] * 7 + ["matched"]
    assert world.jobs.list()[1] == 1


def test_event_stored_before_a_crash_gets_its_job_at_start_exactly_once(tmp_path: Path) -> None:
    world = World(tmp_path)
    # The crash: the event was committed, the process died before dispatching it.
    [stored] = Inbox(world.db).record([created()], "webhook:local")
    assert stored.outcome == "pending"
    restarted = world.make_pipeline()
    restarted.start()
    try:
        wait_until(lambda: restarted.inbox.get(stored.id).outcome != "pending", "dispatch at start")
    finally:
        restarted.stop()
    record = restarted.inbox.get(stored.id)
    assert record.outcome == "matched"
    # A crash after the job was created but before the event was marked: same job id again.
    job_id = record.job_id
    [again] = Inbox(world.db).record([created(etag="md5-2")], "webhook:local")
    trigger = restarted.triggers[0]
    world.jobs.create(
        trigger.render(created(etag="md5-2"), restarted.locator_for("webhook:local")),
        job_id=trigger.job_id(created(etag="md5-2")),
    )
    assert restarted.dispatch_pending() == 1
    assert restarted.inbox.get(again.id).job_id == trigger.job_id(created(etag="md5-2"))
    assert world.jobs.list()[1] == 2
    assert job_id != restarted.inbox.get(again.id).job_id


def test_event_no_trigger_wants_is_ignored_with_the_reason(tmp_path: Path) -> None:
    world = World(tmp_path)
    [other_key] = world.pipeline.ingest([created("processed/images-X.zip")], "webhook:local")
    assert other_key.outcome == "ignored"
    assert "matches key 'processed/images-X.zip'" in (other_key.reason or "")
    assert "classify-incoming: prefix 'incoming/', suffix '.zip'" in (other_key.reason or "")
    [other_bucket] = world.pipeline.ingest(
        [object_created("logs", "x.zip", size=1, etag="e", modified=None)], "webhook:local"
    )
    assert other_bucket.reason == "no trigger for bucket 'logs'"
    assert world.jobs.list()[1] == 0


def test_a_trigger_that_cannot_render_fails_only_its_event(tmp_path: Path) -> None:
    world = World(tmp_path)
    bad, good = world.pipeline.ingest(
        [created("incoming/../../../escape.zip"), created("incoming/fine.zip", etag="md5-3")],
        "webhook:local",
    )
    assert bad.outcome == "failed"
    assert "classify-incoming" in (bad.reason or "") and "'..'" in (bad.reason or "")
    assert good.outcome == "matched"
    assert world.pipeline.trigger_counts() == {"classify-incoming": {"matched": 1, "failed": 1}}


def test_every_matching_trigger_gets_the_event(tmp_path: Path) -> None:
    second = {
        **TRIGGER,
        "name": "archive-copy",
        "job": {**TRIGGER["job"], "name": "copy-{key_stem}"},
    }
    world = World(tmp_path, [TRIGGER, second])
    [record] = world.pipeline.ingest([created()], "webhook:local")
    assert record.outcome == "matched"
    assert sorted(d.trigger for d in record.dispatches) == ["archive-copy", "classify-incoming"]
    names = sorted(job.name for job in world.jobs.list()[0])
    assert names == ["copy-images-X", "images-X"]


def test_rejected_bodies_and_counts_are_listed(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.pipeline.ingest([created(), created()], "webhook:local")
    rejected = world.pipeline.reject("webhook:local", b'{"Records": 1', "body is not JSON: ...")
    assert rejected.outcome == "rejected"
    assert rejected.body_excerpt == '{"Records": 1'
    assert world.pipeline.metrics_counts() == {
        ("webhook:local", "matched"): 1,
        ("webhook:local", "duplicate"): 1,
        ("webhook:local", "rejected"): 1,
    }
    page, total = world.pipeline.inbox.list(limit=2)
    assert total == 3 and [e.outcome for e in page] == ["rejected", "duplicate"]


def test_duplicate_trigger_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="two triggers have this name"):
        World(tmp_path, [TRIGGER, TRIGGER])


def test_outcomes_vocabulary_is_stable() -> None:
    assert [o.value for o in Outcome] == [
        "pending",
        "matched",
        "duplicate",
        "ignored",
        "rejected",
        "failed",
    ]
