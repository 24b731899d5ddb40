"""The `watch` source on real folders with real watchfiles: complete files, each exactly once."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from autoinfer.config import load_config
from autoinfer.db import Database
from autoinfer.events.watch import WatchSource, is_partial
from autoinfer.jobs.service import JobService
from autoinfer.pipeline import EventPipeline
from autoinfer.storage.registry import StorageRegistry
from tests.support.waiting import wait_until

CONFIG = {
    "data_dir": "state",
    "stores": {"local": {"type": "local", "root": "buckets"}},
    "sources": [{"type": "watch", "store": "local", "rescan_s": 60}],
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


class Service:
    """The pipeline with the watch source over `tmp_path/buckets`, restartable on one database."""

    def __init__(self, tmp_path: Path, settle_s: float = 0.3) -> None:
        self.incoming = tmp_path / "buckets" / "data" / "incoming"
        self.incoming.mkdir(parents=True)
        path = tmp_path / "autoinfer.yaml"
        path.write_text(yaml.safe_dump(CONFIG))
        self.config = load_config(path, env={})
        self.db = Database(f"sqlite:///{tmp_path / 'autoinfer.db'}")
        self.jobs = JobService(self.db)
        self.storage = StorageRegistry(self.config.stores, base_dir=self.config.base_dir)
        self.settle_s = settle_s
        self.pipeline: EventPipeline | None = None

    def start(self) -> EventPipeline:
        self.pipeline = EventPipeline(
            self.config, self.db, self.jobs, self.storage, settle_s=self.settle_s
        )
        self.pipeline.start()
        return self.pipeline

    def stop(self) -> None:
        if self.pipeline is not None:
            self.pipeline.stop()

    @property
    def watcher(self) -> WatchSource:
        assert self.pipeline is not None
        [source] = self.pipeline.sources
        assert isinstance(source, WatchSource)
        return source

    def job_count(self) -> int:
        return self.jobs.list(limit=1)[1]

    def job_inputs(self) -> list[str]:
        jobs, _ = self.jobs.list(limit=10_000)
        return [job.spec["data"]["input_uri"] for job in jobs]


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    world = Service(tmp_path)
    yield world
    world.stop()


def test_two_hundred_files_dropped_at_once_start_two_hundred_jobs_once_each(
    service: Service,
) -> None:
    service.start()
    for n in range(200):
        (service.incoming / f"images-{n:03d}.zip").write_bytes(f"archive {n}".encode())
    wait_until(lambda: service.job_count() >= 200, "200 jobs")
    assert sorted(service.job_inputs()) == sorted(
        (service.incoming / f"images-{n:03d}.zip").as_uri() for n in range(200)
    )
    # A restart rescans everything; nothing already reported is offered again.
    service.stop()
    service.start()
    assert service.watcher.settling == 0
    events, total = service.pipeline.inbox.list(limit=1000)  # type: ignore[union-attr]
    assert total == 200 and {e.outcome for e in events} == {"matched"}
    assert service.job_count() == 200


def test_file_written_slowly_is_picked_up_once_and_complete(tmp_path: Path) -> None:
    service = Service(tmp_path, settle_s=1.0)
    try:
        service.start()
        target = service.incoming / "slow.zip"
        digest = hashlib.md5(usedforsecurity=False)
        with target.open("wb") as out:
            for n in range(20):
                chunk = bytes([n]) * 4096
                out.write(chunk)
                out.flush()
                digest.update(chunk)
                time.sleep(0.05)  # far below the settle interval
        wait_until(lambda: service.job_count() == 1, "the slow file's job")
        [event] = service.pipeline.inbox.list()[0]  # type: ignore[union-attr]
        assert event.etag == digest.hexdigest()
        assert event.size == 20 * 4096
        assert service.watcher.settling == 0  # nothing left that could report it again
        assert service.pipeline.inbox.list()[1] == 1  # type: ignore[union-attr]
    finally:
        service.stop()


def test_writer_that_keeps_the_file_open_between_writes_is_waited_for(tmp_path: Path) -> None:
    # Pauses far longer than the settle interval: only the writer's close says it is done.
    service = Service(tmp_path, settle_s=0.2)
    try:
        service.start()
        target = service.incoming / "paused.zip"
        digest = hashlib.md5(usedforsecurity=False)
        with target.open("wb") as out:
            for n in range(3):
                chunk = bytes([n + 1]) * 10_000
                out.write(chunk)
                out.flush()
                digest.update(chunk)
                time.sleep(1.0)
                assert service.job_count() == 0, "reported while its writer still had it open"
        wait_until(lambda: service.job_count() == 1, "the paused file's job")
        [event] = service.pipeline.inbox.list()[0]  # type: ignore[union-attr]
        assert event.etag == digest.hexdigest()
        assert event.size == 30_000
        time.sleep(0.5)  # nothing may report it a second time
        assert service.pipeline.inbox.list()[1] == 1  # type: ignore[union-attr]
    finally:
        service.stop()


def test_file_in_a_folder_created_after_start_is_seen(service: Service) -> None:
    service.start()
    nested = service.incoming / "later" / "deeper"
    nested.mkdir(parents=True)
    time.sleep(0.2)  # the new folders' watches are in place; the file arrives afterwards
    (nested / "n.zip").write_bytes(b"nested")
    wait_until(lambda: service.job_count() == 1, "the nested file's job")
    assert service.job_inputs() == [(nested / "n.zip").as_uri()]


def test_files_added_while_stopped_are_processed_after_start(service: Service) -> None:
    service.start()
    (service.incoming / "before.zip").write_bytes(b"before")
    wait_until(lambda: service.job_count() == 1, "the first job")
    service.stop()
    (service.incoming / "while-down-1.zip").write_bytes(b"one")
    (service.incoming / "while-down-2.zip").write_bytes(b"two")
    service.start()
    wait_until(lambda: service.job_count() == 3, "the jobs of files added while down")
    names = sorted(job.name for job in service.jobs.list()[0])
    assert names == ["before", "while-down-1", "while-down-2"]


def test_files_present_at_the_very_first_start_are_processed(service: Service) -> None:
    (service.incoming / "early.zip").write_bytes(b"early")
    service.start()
    wait_until(lambda: service.job_count() == 1, "the early file's job")


def test_temp_and_partial_files_are_not_objects_until_renamed(service: Service) -> None:
    service.start()
    partial = service.incoming / "upload.zip.part"
    partial.write_bytes(b"data")
    (service.incoming / ".upload.zip").write_bytes(b"hidden")
    (service.incoming / "browser.zip.crdownload").write_bytes(b"x")
    partial.rename(service.incoming / "upload.zip")
    wait_until(lambda: service.job_count() == 1, "the renamed upload's job")
    assert [job.name for job in service.jobs.list()[0]] == ["upload"]
    assert service.pipeline.inbox.list()[1] == 1  # type: ignore[union-attr]


def test_new_content_under_the_same_name_is_a_new_object(service: Service) -> None:
    service.start()
    target = service.incoming / "again.zip"
    target.write_bytes(b"first")
    wait_until(lambda: service.job_count() == 1, "the first version's job")
    target.write_bytes(b"second version")
    wait_until(lambda: service.job_count() == 2, "the second version's job")


def test_a_folder_moved_into_the_bucket_is_reported_whole(service: Service, tmp_path: Path) -> None:
    service.start()
    batch = tmp_path / "batch"
    batch.mkdir()
    for n in range(3):
        (batch / f"b{n}.zip").write_bytes(bytes([n]))
    batch.rename(service.incoming / "batch")
    wait_until(lambda: service.job_count() == 3, "jobs for the moved folder's files")


def test_events_of_the_watcher_carry_the_content_md5(service: Service) -> None:
    service.start()
    (service.incoming / "x.zip").write_bytes(b"content")
    wait_until(lambda: service.job_count() == 1, "the job")
    [event] = service.pipeline.inbox.list()[0]  # type: ignore[union-attr]
    assert event.etag == hashlib.md5(b"content", usedforsecurity=False).hexdigest()
    assert event.event_name == "ObjectCreated:Put"
    assert event.source == "watch:local"
    assert event.raw["s3"]["object"]["key"] == "incoming/x.zip"  # type: ignore[index]


@pytest.mark.parametrize(
    ("relative", "partial"),
    [
        ("data/incoming/a.zip", False),
        ("data/incoming/a.zip.tmp", True),
        ("data/incoming/a.zip.part", True),
        ("data/incoming/a.zip.crdownload", True),
        ("data/.cache/a.zip", True),
        ("data/incoming/.a.zip", True),
    ],
)
def test_partial_file_names(relative: str, partial: bool) -> None:
    assert is_partial(relative) is partial
