"""An event pipeline over a local store in a test's tmp_path, with no running sources, and the
object-created events fed to it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from autoinfer.config import load_config
from autoinfer.db import Database
from autoinfer.events.model import S3Event, object_created
from autoinfer.jobs.service import JobService
from autoinfer.pipeline import EventPipeline
from autoinfer.storage.registry import StorageRegistry

TRIGGER = {
    "name": "classify-incoming",
    "bucket": "data",
    "prefix": "incoming/",
    "suffix": ".zip",
    "job": {
        "name": "{key_stem}",
        "model": {"source_type": "builtin", "source_uri": "efficientnet_lite0"},
        "data": {"input_uri": "{uri}", "output_uri": "{bucket_uri}/processed"},
    },
}


class World:
    """A pipeline over a local store in tmp_path, with no running sources."""

    def __init__(self, tmp_path: Path, triggers: list[dict[str, Any]] | None = None) -> None:
        (tmp_path / "buckets" / "data").mkdir(parents=True, exist_ok=True)
        settings = {
            "data_dir": "state",
            "stores": {"local": {"type": "local", "root": "buckets"}},
            "sources": [{"type": "webhook", "store": "local", "token": "t"}],
            "triggers": [TRIGGER] if triggers is None else triggers,
        }
        path = tmp_path / "autoinfer.yaml"
        path.write_text(yaml.safe_dump(settings))
        self.config = load_config(path, env={})
        self.db = Database(f"sqlite:///{tmp_path / 'autoinfer.db'}")
        self.jobs = JobService(self.db)
        self.storage = StorageRegistry(self.config.stores, base_dir=self.config.base_dir)
        self.woken = 0
        self.pipeline = self.make_pipeline()

    def make_pipeline(self) -> EventPipeline:
        return EventPipeline(
            self.config, self.db, self.jobs, self.storage, on_jobs_created=self._wake
        )

    def _wake(self) -> None:
        self.woken += 1


def created(
    key: str = "incoming/images-X.zip", etag: str = "md5-1", modified: datetime | None = None
) -> S3Event:
    when = modified or datetime(2026, 1, 1, tzinfo=UTC)
    return object_created("data", key, size=10, etag=etag, modified=when)
