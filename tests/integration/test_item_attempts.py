"""A new attempt's item results replace the earlier attempts' in the same transaction as its
first write (`AttemptItems.start` writes nothing by itself), on a real SQLite database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from autoinfer.db import Database
from autoinfer.item_results import AttemptItems
from autoinfer.jobs.items import ItemRecord, JobItems
from autoinfer.jobs.service import JobService
from autoinfer.jobs.spec import parse_spec


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'items.db'}")
    yield database
    database.dispose()


def _job(db: Database) -> str:
    job, _ = JobService(db).create(
        parse_spec({"name": "j", "data": {"input_uri": "/in", "output_uri": "/o"}})
    )
    return job.id


def _files(items: JobItems, job_id: str) -> list[str]:
    return [item.file for item in items.page(job_id).items]


def test_a_new_attempt_replaces_the_earlier_items_with_its_first_write(
    db: Database, tmp_path: Path
) -> None:
    items, job_id = JobItems(db), _job(db)
    items.record(job_id, [ItemRecord(file="old.jpg", status="ok")])

    attempt = AttemptItems(items, job_id, log=lambda line: None)
    attempt.start()
    assert _files(items, job_id) == ["old.jpg"]  # nothing written yet
    attempt.add_predictions([{"file": "a.jpg", "classes": [{"id": "n1", "name": "x"}]}])
    attempt.add_predictions([{"file": "b.jpg", "error": "not an image"}])
    attempt.finish(tmp_path)
    assert _files(items, job_id) == ["a.jpg", "b.jpg"]
    assert (tmp_path / "errors.json").is_file()


def test_a_failed_attempt_that_recorded_nothing_still_clears_the_earlier_items(
    db: Database,
) -> None:
    items, job_id = JobItems(db), _job(db)
    items.record(job_id, [ItemRecord(file="old.jpg", status="ok")])
    attempt = AttemptItems(items, job_id, log=lambda line: None)
    attempt.start()
    attempt.settle()
    assert _files(items, job_id) == []


def test_record_with_replace_and_no_items_clears_and_without_replace_adds(db: Database) -> None:
    items, job_id = JobItems(db), _job(db)
    items.record(job_id, [ItemRecord(file="a.jpg", status="ok")])
    items.record(job_id, [ItemRecord(file="b.jpg", status="ok")])
    assert _files(items, job_id) == ["a.jpg", "b.jpg"]
    items.record(job_id, [], replace=True)
    assert _files(items, job_id) == []
