"""The `poll` source over a local store: a persisted cursor, and backfill on or off."""

from __future__ import annotations

from pathlib import Path

import yaml

from autoinfer.config import load_config
from autoinfer.db import Database
from autoinfer.events.poll import PollSource
from autoinfer.jobs.service import JobService
from autoinfer.pipeline import EventPipeline
from autoinfer.storage.registry import StorageRegistry
from tests.support.waiting import wait_until


class World:
    def __init__(self, tmp_path: Path, *, backfill: bool, prefix: str = "incoming/") -> None:
        self.bucket = tmp_path / "buckets" / "data"
        (self.bucket / "incoming").mkdir(parents=True, exist_ok=True)
        settings = {
            "data_dir": "state",
            "stores": {"local": {"type": "local", "root": "buckets"}},
            "sources": [
                {
                    "type": "poll",
                    "store": "local",
                    "bucket": "data",
                    "prefix": prefix,
                    "interval_s": 0.2,
                    "backfill": backfill,
                }
            ],
            "triggers": [
                {
                    "name": "classify-incoming",
                    "bucket": "data",
                    "prefix": "incoming/",
                    "suffix": ".zip",
                    "job": {"data": {"output_uri": "{bucket_uri}/processed"}},
                }
            ],
        }
        path = tmp_path / "autoinfer.yaml"
        path.write_text(yaml.safe_dump(settings))
        self.config = load_config(path, env={})
        self.db = Database(f"sqlite:///{tmp_path / 'autoinfer.db'}")
        self.jobs = JobService(self.db)
        self.storage = StorageRegistry(self.config.stores, base_dir=self.config.base_dir)

    def pipeline(self) -> EventPipeline:
        """A fresh pipeline on the same database, as after a restart."""
        return EventPipeline(self.config, self.db, self.jobs, self.storage)

    def poller(self, pipeline: EventPipeline) -> PollSource:
        [source] = pipeline.sources
        assert isinstance(source, PollSource)
        return source

    def put(self, key: str, content: bytes) -> None:
        path = self.bucket / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)

    def job_names(self) -> list[str]:
        return sorted(job.name for job in self.jobs.list()[0])


def test_without_backfill_objects_present_at_first_start_are_not_processed(tmp_path: Path) -> None:
    world = World(tmp_path, backfill=False)
    world.put("incoming/old.zip", b"old")
    pipeline = world.pipeline()
    poller = world.poller(pipeline)
    assert poller.poll_once() == 0
    world.put("incoming/new.zip", b"new")
    assert poller.poll_once() == 1
    assert poller.poll_once() == 0  # nothing new since
    assert world.job_names() == ["new"]


def test_with_backfill_objects_present_at_first_start_are_processed(tmp_path: Path) -> None:
    world = World(tmp_path, backfill=True)
    world.put("incoming/old-1.zip", b"1")
    world.put("incoming/old-2.zip", b"2")
    poller = world.poller(world.pipeline())
    assert poller.poll_once() == 2
    assert world.job_names() == ["old-1", "old-2"]


def test_cursor_survives_a_restart(tmp_path: Path) -> None:
    world = World(tmp_path, backfill=True)
    world.put("incoming/a.zip", b"a")
    assert world.poller(world.pipeline()).poll_once() == 1
    world.put("incoming/b.zip", b"b")
    restarted = world.poller(world.pipeline())
    assert restarted.poll_once() == 1  # only b: a was seen before the restart
    assert world.job_names() == ["a", "b"]


def test_objects_added_while_stopped_are_found_and_backfill_applies_only_once(
    tmp_path: Path,
) -> None:
    world = World(tmp_path, backfill=False)
    assert world.poller(world.pipeline()).poll_once() == 0  # first start: empty prefix
    world.put("incoming/while-down.zip", b"x")
    assert world.poller(world.pipeline()).poll_once() == 1
    assert world.job_names() == ["while-down"]


def test_changed_content_is_reported_again_and_the_prefix_bounds_the_listing(
    tmp_path: Path,
) -> None:
    world = World(tmp_path, backfill=True, prefix="incoming/img")
    world.put("incoming/img-1.zip", b"v1")
    world.put("incoming/other.zip", b"not under the prefix")
    world.put("incoming-old/img-2.zip", b"not under the prefix either")
    poller = world.poller(world.pipeline())
    assert poller.poll_once() == 1
    world.put("incoming/img-1.zip", b"v2")
    assert poller.poll_once() == 1
    assert world.jobs.list()[1] == 2


def test_running_poller_reports_new_objects(tmp_path: Path) -> None:
    world = World(tmp_path, backfill=False)
    pipeline = world.pipeline()
    pipeline.start()
    try:
        wait_until(
            lambda: pipeline.inbox.list()[1] == 0 and world.poller(pipeline).cursor.started(),
            "first poll",
        )
        world.put("incoming/live.zip", b"live")
        wait_until(lambda: world.job_names() == ["live"], "the polled object's job")
    finally:
        pipeline.stop()
    [event] = pipeline.inbox.list()[0]
    assert event.source == "poll:local:data/incoming/"
