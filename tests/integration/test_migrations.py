"""Schema migrations on SQLite and PostgreSQL: a database made by the previous release
(0.1.0, `create_all`, no `alembic_version`) upgrades in place and keeps its rows; a fresh one
goes straight to head; the revisions build exactly the models' schema; `autoinfer migrate`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import Engine

from autoinfer.db import Database
from autoinfer.jobs.service import JobService
from autoinfer.migrations import BASELINE, current_revision, head_revision, upgrade_schema
from autoinfer.schema import metadata

PREVIOUS_RELEASE = Path(__file__).parents[1] / "data" / "previous_release"
CLI = [sys.executable, "-m", "autoinfer.cli"]
NEW_TABLES = {"notifications", "job_items"}
JOB_ID = "old-job-0001"
SPEC = {"name": "old-job", "data": {"input_uri": "/in", "output_uri": "/out"}}


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'autoinfer.db'}"
    return str(request.getfixturevalue("pg_url"))


def make_previous_release_database(url: str) -> None:
    """The tables 0.1.0 made, from its own DDL, and a few rows it would have written."""
    engine = create_engine(url)
    ddl = (PREVIOUS_RELEASE / f"{engine.dialect.name}.sql").read_text()
    ddl = "\n".join(line for line in ddl.splitlines() if not line.startswith("--"))
    with engine.begin() as connection:
        for statement in ddl.split(";\n"):
            if statement.strip():
                connection.exec_driver_sql(statement)
        at = "2026-11-01 10:00:00"
        connection.execute(
            text(
                "INSERT INTO jobs (id, name, spec, status, attempt, max_attempts, created_at,"
                " updated_at, source, stop_requested, output_location)"
                " VALUES (:id, 'old-job', :spec, 'finished', 1, 3, :at, :at, 'api', false,"
                " '/out/old-job.zip')"
            ),
            {"id": JOB_ID, "spec": json.dumps(SPEC), "at": at},
        )
        connection.execute(
            text(
                "INSERT INTO job_transitions (job_id, status, attempt, at)"
                " VALUES (:id, 'finished', 1, :at)"
            ),
            {"id": JOB_ID, "at": at},
        )
        connection.execute(
            text(
                "INSERT INTO events (source, bucket, key, received_at, outcome, deliveries, job_id)"
                " VALUES ('webhook:s3', 'data', 'in/a.zip', :at, 'dispatched', 1, :id)"
            ),
            {"id": JOB_ID, "at": at},
        )
    engine.dispose()


def schema_differences(engine: Engine) -> list[Any]:
    """What the models hold that the database does not (or the reverse); [] when they agree."""
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return [
            change
            for change in compare_metadata(context, metadata)
            if not (change[0] == "remove_table" and change[1].name == "alembic_version")
        ]


def test_a_fresh_database_goes_straight_to_head_and_matches_the_models(url: str) -> None:
    db = Database(url)
    try:
        assert current_revision(db.engine) == head_revision()
        assert schema_differences(db.engine) == []
    finally:
        db.dispose()


def test_a_previous_release_database_is_stamped_upgraded_and_keeps_its_rows(url: str) -> None:
    make_previous_release_database(url)
    probe = create_engine(url)
    assert current_revision(probe) is None
    assert not NEW_TABLES & set(inspect(probe).get_table_names())
    assert schema_differences(probe) != []  # the test would notice an upgrade that did nothing
    probe.dispose()

    db = Database(url)
    try:
        assert current_revision(db.engine) == head_revision()
        assert schema_differences(db.engine) == []
        job = JobService(db).get(JOB_ID)
        assert (job.name, str(job.status), job.attempt) == ("old-job", "finished", 1)
        assert job.spec["data"]["output_uri"] == "/out"
        assert [str(t.status) for t in job.transitions] == ["finished"]
        with db.connection() as connection:
            event = connection.execute(text("SELECT key, job_id FROM events")).one()
            assert tuple(event) == ("in/a.zip", JOB_ID)
            # The new tables work, and hang off the old rows.
            connection.execute(
                text("INSERT INTO job_items (job_id, file, status) VALUES (:id, 'a.jpg', 'ok')"),
                {"id": JOB_ID},
            )
        assert JobService(db).get(JOB_ID).id == JOB_ID
    finally:
        db.dispose()
    # Opening it again finds it at head and changes nothing.
    again = Database(url, upgrade=False)
    assert upgrade_schema(again.engine).changed is False
    again.dispose()


def test_a_database_from_a_build_between_the_release_and_migrations_upgrades(url: str) -> None:
    """Such a build's create_all made the second wave's tables too, but no retention index."""
    engine = create_engine(url)
    metadata.create_all(engine)
    with engine.begin() as connection:
        connection.exec_driver_sql("DROP INDEX ix_jobs_status_updated")
    engine.dispose()

    done = upgrade_schema(Database(url, upgrade=False).engine)

    assert (done.before, done.stamped, done.after) == (None, BASELINE, head_revision())
    probe = create_engine(url)
    assert schema_differences(probe) == []
    probe.dispose()


def test_replicas_opening_an_old_database_together_upgrade_it_once(url: str) -> None:
    make_previous_release_database(url)
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []
    opened: list[Database] = []

    def open_one() -> None:
        try:
            barrier.wait()
            opened.append(Database(url))
        except BaseException as error:  # noqa: BLE001 - handed to the test thread
            errors.append(error)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    assert len(opened) == 4
    with opened[0].connection() as connection:
        versions = connection.execute(text("SELECT version_num FROM alembic_version")).all()
        jobs = connection.execute(text("SELECT count(*) FROM jobs")).scalar_one()
    assert [tuple(row) for row in versions] == [(head_revision(),)]
    assert jobs == 1
    for db in opened:
        db.dispose()


def run_migrate(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [*CLI, "migrate", *args],
        check=False,
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        timeout=120,
    )
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    return result


def test_the_migrate_command_says_from_where_to_where(tmp_path: Path) -> None:
    data = tmp_path / "state"
    data.mkdir()
    make_previous_release_database(f"sqlite:///{data / 'autoinfer.db'}")
    head = head_revision()

    first = run_migrate("--data-dir", str(data))
    second = run_migrate("--data-dir", str(data))

    assert first.returncode == 0, first.stderr
    assert first.stdout.strip().endswith(
        f"none (made before migrations: recognised as {BASELINE}) → {head} (head), upgraded"
    )
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip().endswith(f"{head} → {head} (head), already at head")
    assert current_revision(create_engine(f"sqlite:///{data / 'autoinfer.db'}")) == head


def test_the_migrate_command_names_a_database_it_cannot_reach(tmp_path: Path) -> None:
    config = tmp_path / "autoinfer.yaml"
    unreachable = "postgresql+psycopg://autoinfer:hunter2@127.0.0.1:1/autoinfer"
    config.write_text(yaml.safe_dump({"data_dir": str(tmp_path), "database_url": unreachable}))

    result = run_migrate("--config", str(config))

    assert result.returncode == 1
    line = " ".join(result.stderr.split())
    assert "error: database postgresql+psycopg://autoinfer:***@127.0.0.1:1/autoinfer:" in line
    assert "hunter2" not in result.stdout + result.stderr
