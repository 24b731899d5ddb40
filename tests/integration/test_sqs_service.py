"""The sqs source inside the real service, against moto's server: S3 → SQS → inbox → jobs.

Notifications are sent to the queue by moto itself when objects are put. Jobs run a tiny
local model (a script that lists its input), so they finish in moments.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from autoinfer.config import Config, SourceConfig, StoreConfig, TriggerConfig
from autoinfer.events.sqs import SqsSource, parse_message_body
from autoinfer.inbox import EventRecord, Outcome
from tests.conftest import RunningService
from tests.s3_server import make_bucket_with_queue, queue_depth
from tests.support.waiting import wait_until

BUCKET = "data"
TERMINAL = ("finished", "failed", "stopped")

PREDICT = """\
import os, pathlib
data = pathlib.Path(os.environ["AUTOINFER_DATA_PATH"])
out = pathlib.Path(os.environ["AUTOINFER_OUTPUT_PATH"]) / "files.txt"
out.write_text("\\n".join(sorted(p.name for p in data.rglob("*") if p.is_file())))
"""


def sqs_config(
    make_config: Callable[..., Config], tmp_path: Path, endpoint: str, queue_url: str
) -> Config:
    model = tmp_path / "model"
    model.mkdir(exist_ok=True)
    (model / "predict.py").write_text(PREDICT)
    return make_config(
        stores={"lake": StoreConfig(type="s3", endpoint_url=endpoint, region="us-east-1")},
        sources=[SourceConfig(type="sqs", store="lake", queue_url=queue_url, wait_time_s=1)],
        triggers=[
            TriggerConfig(
                name="list-incoming",
                bucket=BUCKET,
                prefix="incoming/",
                suffix=".zip",
                max_attempts=1,
                job={
                    "name": "{key_stem}",
                    "model": {"source_type": "local", "source_uri": str(model)},
                    "workers": ["python predict.py"],
                    "data": {"input_uri": "{uri}", "output_uri": "{bucket_uri}/processed"},
                },
            )
        ],
    )


def small_zip(name: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(f"{name}.txt", name)
    return buffer.getvalue()


def jobs_by_name(running: RunningService) -> dict[str, list[str]]:
    """Job name → the statuses of the jobs of that name (one entry per job)."""
    jobs, _ = running.service.jobs.list(limit=1000)
    found: dict[str, list[str]] = {}
    for job in jobs:
        found.setdefault(job.name, []).append(job.status)
    return found


def all_finished(running: RunningService, names: list[str]) -> bool:
    jobs = jobs_by_name(running)
    return sorted(jobs) == sorted(names) and all(
        status in TERMINAL for statuses in jobs.values() for status in statuses
    )


def inbox_events(running: RunningService) -> list[EventRecord]:
    events, _ = running.service.pipeline.inbox.list(limit=1000)
    return events


def peek_bodies(sqs_client: Any, queue_url: str, count: int) -> dict[str, str]:
    """Object key → the body of the queued message reporting it, leaving every message in
    the queue (received with a visibility timeout of 0, so each is visible again at once)."""
    bodies: dict[str, str] = {}
    for _ in range(20):
        response = sqs_client.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=0, WaitTimeSeconds=1
        )
        for message in response.get("Messages", []):
            for event in parse_message_body(message["Body"]).events:
                bodies[event.key] = message["Body"]
        if len(bodies) == count:
            return bodies
    raise AssertionError(f"only {sorted(bodies)} of {count} messages seen in the queue")


def test_messages_queued_while_the_service_is_stopped_are_processed_once_after_restart(
    start_service: Callable[..., RunningService],
    make_config: Callable[..., Config],
    s3_endpoint: str,
    s3_client: Any,
    sqs_client: Any,
    tmp_path: Path,
) -> None:
    queue_url = make_bucket_with_queue(s3_endpoint, BUCKET)
    config = sqs_config(make_config, tmp_path, s3_endpoint, queue_url)
    first = start_service(config)
    s3_client.put_object(Bucket=BUCKET, Key="incoming/a.zip", Body=small_zip("a"))
    wait_until(lambda: all_finished(first, ["a"]), "the job of the object put while running")
    first.server.stop()

    # While the service is down, three more objects land; their notifications wait.
    for name in ("b", "c", "d"):
        s3_client.put_object(Bucket=BUCKET, Key=f"incoming/{name}.zip", Body=small_zip(name))
    bodies = peek_bodies(sqs_client, queue_url, 3)
    wait_until(lambda: queue_depth(s3_endpoint, queue_url) == (3, 0), "the messages to wait")

    second = start_service(config)  # same data folder, same database: a restart
    wait_until(lambda: all_finished(second, ["a", "b", "c", "d"]), "the queued objects' jobs")
    wait_until(lambda: queue_depth(s3_endpoint, queue_url) == (0, 0), "the queue to empty")

    assert jobs_by_name(second) == {name: ["finished"] for name in ("a", "b", "c", "d")}
    events = inbox_events(second)
    assert sorted((e.key, e.outcome) for e in events) == [
        (f"incoming/{name}.zip", Outcome.MATCHED.value) for name in ("a", "b", "c", "d")
    ]
    outputs = s3_client.list_objects_v2(Bucket=BUCKET, Prefix="processed/")["Contents"]
    assert sorted(o["Key"] for o in outputs) == [f"processed/{n}.zip" for n in "abcd"]

    # SQS delivers at least once: the same message again is recorded as a duplicate,
    # deleted, and starts nothing.
    sqs_client.send_message(QueueUrl=queue_url, MessageBody=bodies["incoming/b.zip"])
    wait_until(
        lambda: any(e.outcome == Outcome.DUPLICATE.value for e in inbox_events(second)),
        "the redelivery to be recorded",
    )
    wait_until(lambda: queue_depth(s3_endpoint, queue_url) == (0, 0), "the redelivery's deletion")
    [duplicate] = [e for e in inbox_events(second) if e.outcome == Outcome.DUPLICATE.value]
    assert duplicate.key == "incoming/b.zip"
    assert jobs_by_name(second) == {name: ["finished"] for name in ("a", "b", "c", "d")}


def test_configured_long_poll_wait_is_used(s3_endpoint: str) -> None:
    config = SourceConfig(type="sqs", queue_url=f"{s3_endpoint}/123456789012/q", wait_time_s=1)

    source = SqsSource.from_config("sqs:q", config, {}, str, lambda events, source: [])

    assert source.wait_time_s == 1
