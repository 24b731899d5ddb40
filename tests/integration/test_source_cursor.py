"""A source's cursor (what a watcher or poller already reported) on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from autoinfer.db import Database
from autoinfer.inbox import SeenObject, SourceCursor


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    if request.param == "sqlite":
        return Database(f"sqlite:///{tmp_path / 'autoinfer.db'}")
    return Database(request.getfixturevalue("pg_url"))


def test_remembering_an_object_again_replaces_what_was_known_of_it(db: Database) -> None:
    cursor = SourceCursor(db, "watch:local")
    cursor.remember(
        [
            ("data", "incoming/a.zip", SeenObject("etag-a", 1, "1:10")),
            ("data", "incoming/b.zip", SeenObject("etag-b", 2, "2:20")),
        ]
    )
    cursor.remember([("data", "incoming/a.zip", SeenObject("etag-a2", 3, "3:30"))])

    assert cursor.seen() == {
        ("data", "incoming/a.zip"): SeenObject("etag-a2", 3, "3:30"),
        ("data", "incoming/b.zip"): SeenObject("etag-b", 2, "2:20"),
    }


def test_batches_of_any_size_are_remembered_per_source(db: Database) -> None:
    watcher, poller = SourceCursor(db, "watch:local"), SourceCursor(db, "poll:lake:data/")
    for size in (1, 7, 1200, 3):
        watcher.remember(
            ("data", f"incoming/{size}-{i}.zip", SeenObject(None, i, None)) for i in range(size)
        )
    poller.remember([("data", "incoming/1-0.zip", SeenObject("p", 0, "v1"))])

    assert len(watcher.seen()) == 1 + 7 + 1200 + 3
    assert watcher.seen()[("data", "incoming/1-0.zip")] == SeenObject(None, 0, None)
    assert poller.seen() == {("data", "incoming/1-0.zip"): SeenObject("p", 0, "v1")}
