"""`autoinfer doctor` against moto's S3 and SQS: one actionable line per problem, exit code 1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.s3_server import free_port, make_bucket_with_queue

CLI = [sys.executable, "-m", "autoinfer.cli"]


def trigger(name: str, bucket: str) -> dict[str, Any]:
    return {
        "name": name,
        "bucket": bucket,
        "prefix": "incoming/",
        "suffix": ".zip",
        "job": {"data": {"input_uri": "{uri}", "output_uri": "{bucket_uri}/processed"}},
    }


def run_doctor(tmp_path: Path, settings: dict[str, Any]) -> tuple[int, list[str], list[str]]:
    """Exit code, problem lines and passed checks of `autoinfer doctor --config FILE`."""
    config = tmp_path / "autoinfer.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "state"), **settings}))
    result = subprocess.run(
        [*CLI, "doctor", "--config", str(config)],
        check=False,
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "80"},
        timeout=120,
    )
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    lines = result.stdout.splitlines()
    problems = [line for line in lines if line.startswith("✗")]
    passed = [line for line in lines if line.startswith("✓")]
    return result.returncode, problems, passed


def test_doctor_names_a_wrong_endpoint_a_missing_bucket_and_missing_notifications(
    s3_endpoint: str, s3_client: Any, tmp_path: Path
) -> None:
    queue_url = make_bucket_with_queue(s3_endpoint, "wired")
    s3_client.create_bucket(Bucket="quiet")  # exists, sends no notifications
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    code, problems, passed = run_doctor(
        tmp_path,
        {
            "stores": {
                "lake": {
                    "type": "s3",
                    "endpoint_url": s3_endpoint,
                    "region": "us-east-1",
                    "buckets": ["wired", "quiet", "missing"],
                },
                "far": {"type": "s3", "endpoint_url": dead, "buckets": ["far-*"]},
            },
            "sources": [{"type": "sqs", "store": "lake", "queue_url": queue_url}],
            "triggers": [
                trigger("wired-in", "wired"),
                trigger("quiet-in", "quiet"),
                trigger("missing-in", "missing"),
                trigger("far-in", "far-data"),
            ],
        },
    )
    assert code == 1
    assert len(problems) == 3, "\n".join(problems)
    endpoint, missing, quiet = sorted(
        problems, key=lambda line: ("far" not in line, "quiet" in line)
    )
    assert f"store 'far': cannot reach endpoint {dead}" in endpoint
    assert "is the S3 server running? Check stores.far.endpoint_url" in endpoint
    assert "bucket 'missing' (trigger 'missing-in') does not exist on store 'lake'" in missing
    assert "aws s3 mb s3://missing" in missing
    assert "bucket 'quiet' sends no ObjectCreated notifications" in quiet
    assert "'incoming/'" in quiet and "wired-events" in quiet and "trigger 'quiet-in'" in quiet
    assert "put-bucket-notification-configuration --bucket quiet" in quiet
    assert any("bucket 'wired' sends trigger 'wired-in' its events" in line for line in passed)
    assert any(f"queue {queue_url}: reachable" in line for line in passed)


def test_doctor_passes_a_configuration_whose_world_is_in_order(
    s3_endpoint: str, tmp_path: Path
) -> None:
    queue_url = make_bucket_with_queue(s3_endpoint, "wired")
    code, problems, passed = run_doctor(
        tmp_path,
        {
            "stores": {"lake": {"type": "s3", "endpoint_url": s3_endpoint}},
            "sources": [{"type": "sqs", "store": "lake", "queue_url": queue_url}],
            "triggers": [trigger("wired-in", "wired")],
        },
    )
    assert (code, problems) == (0, [])
    assert len(passed) >= 4  # database, configuration, bucket, queue, notifications


def test_doctor_reports_a_missing_queue_and_a_notification_sent_elsewhere(
    s3_endpoint: str, tmp_path: Path
) -> None:
    make_bucket_with_queue(s3_endpoint, "wired")  # notifies wired-events
    gone = f"{s3_endpoint}/123456789012/no-such-queue"
    code, problems, _ = run_doctor(
        tmp_path,
        {
            "stores": {"lake": {"type": "s3", "endpoint_url": s3_endpoint}},
            "sources": [{"type": "sqs", "store": "lake", "queue_url": gone}],
            "triggers": [trigger("wired-in", "wired")],
        },
    )
    assert code == 1 and len(problems) == 2, problems
    assert f"queue {gone} (sources[0]): the queue does not exist" in problems[0]
    assert "bucket 'wired' sends no ObjectCreated notifications" in problems[1]
    assert "to no-such-queue" in problems[1]


def test_doctor_reports_an_unreachable_database_and_an_invalid_configuration(
    tmp_path: Path,
) -> None:
    url = f"postgresql+psycopg://autoinfer:hunter2@127.0.0.1:{free_port()}/autoinfer"
    code, problems, _ = run_doctor(
        tmp_path,
        {"database_url": url, "triggers": [{"name": "t", "bucket": "b"}]},
    )
    assert code == 1 and len(problems) == 2, problems
    assert "cannot connect" in problems[0] and "database_url" in problems[0]
    assert "hunter2" not in problems[0]  # the password is not printed
    assert "trigger 't': give exactly one of `job` (a template) or `handler`" in problems[1]


def test_doctor_reads_store_credentials_from_the_services_secret_store(
    s3_endpoint: str, tmp_path: Path
) -> None:
    from autoinfer.db import Database, default_url
    from autoinfer.secrets import Secrets, load_master_key

    queue_url = make_bucket_with_queue(s3_endpoint, "wired")
    state = tmp_path / "state"
    state.mkdir()
    db = Database(default_url(state))
    Secrets(db, load_master_key(state)).set("lake", "testing:testing")
    db.dispose()
    settings = {
        "stores": {
            "lake": {"type": "s3", "endpoint_url": s3_endpoint, "credentials": "secret:lake"}
        },
        "sources": [{"type": "sqs", "store": "lake", "queue_url": queue_url}],
        "triggers": [trigger("wired-in", "wired")],
    }
    code, problems, _ = run_doctor(tmp_path, settings)
    assert (code, problems) == (0, [])
    settings["stores"]["lake"]["credentials"] = "secret:unknown"
    code, problems, _ = run_doctor(tmp_path, settings)
    assert code == 1 and len(problems) == 1
    assert "secret 'unknown' is not set (run `autoinfer secrets set unknown`" in problems[0]
