"""The sqs source against moto's standalone server: S3 notifications delivered by moto itself."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from autoinfer.config import SourceConfig, StoreConfig
from autoinfer.db import Database
from autoinfer.errors import ConfigError, EventError
from autoinfer.events.model import S3Event
from autoinfer.events.sqs import SqsSource, make_sqs_client, parse_message_body, sqs_endpoint
from autoinfer.inbox import Inbox, Outcome
from autoinfer.storage.s3 import S3Storage
from tests.s3_server import (
    ACCOUNT_ID,
    aws_client,
    free_port,
    make_bucket_with_queue,
    queue_depth,
)
from tests.support.waiting import wait_until

NAME = "sqs:test"


class Sink:
    """Stands in for `EventPipeline.ingest`/`reject`: records what it is given; the first
    `fail` calls to `ingest` raise, as a database that is down would."""

    def __init__(self, fail: int = 0) -> None:
        self.events: list[S3Event] = []
        self.rejected: list[tuple[str, str, str]] = []
        self.fail = fail
        self.calls = 0

    def ingest(self, events: Sequence[S3Event], source: str) -> list[Any]:
        self.calls += 1
        assert source == NAME
        if self.calls <= self.fail:
            raise RuntimeError("database is locked")
        self.events.extend(events)
        return []

    def reject(self, source: str, body: str, reason: str) -> None:
        self.rejected.append((source, body, reason))


def source_for(endpoint: str, queue_url: str, sink: Sink, **options: Any) -> SqsSource:
    client = make_sqs_client(queue_url, S3Storage(endpoint_url=endpoint), wait_time_s=0)
    options.setdefault("wait_time_s", 0)
    return SqsSource(NAME, client, queue_url, sink.ingest, reject=sink.reject, **options)


def poll_until(source: SqsSource, done: Callable[[], bool], rounds: int = 20) -> None:
    for _ in range(rounds):
        if done():
            return
        source.poll_once()
    assert done(), f"not done after {rounds} polls: {source.stats}"


def polling_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"{NAME}-sqs" and t.is_alive()]


def notification(bucket: str, key: str) -> dict[str, Any]:
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": "us-east-1",
                "eventTime": "2026-11-24T10:00:00.000Z",
                "eventName": "ObjectCreated:Put",
                "s3": {
                    "bucket": {"name": bucket},
                    "object": {"key": key, "size": 1, "eTag": "abc"},
                },
            }
        ]
    }


@pytest.fixture
def queue(s3_endpoint: str) -> str:
    """Bucket `data` notifying a queue (visibility 0: an unacknowledged message is back at
    once) of `.zip` objects under `incoming/`; S3's TestEvent is waiting in it."""
    return make_bucket_with_queue(s3_endpoint, "data", visibility_timeout_s=0)


# --- message bodies (pure) -------------------------------------------------------------------


def test_sns_envelope_is_unwrapped() -> None:
    envelope = {"Type": "Notification", "Message": json.dumps(notification("data", "a+b.zip"))}
    assert [e.key for e in parse_message_body(json.dumps(envelope)).events] == ["a b.zip"]
    with pytest.raises(EventError, match="not JSON"):
        parse_message_body("not json")


def test_queue_url_gives_endpoint_or_region() -> None:
    assert sqs_endpoint("https://sqs.eu-west-1.amazonaws.com/1/q") == (None, "eu-west-1")
    assert sqs_endpoint("https://eu-west-1.queue.amazonaws.com/1/q") == (None, "eu-west-1")
    assert sqs_endpoint("http://127.0.0.1:9324/000/q") == ("http://127.0.0.1:9324", None)
    with pytest.raises(ConfigError):
        sqs_endpoint("queue-name")


# --- against moto ----------------------------------------------------------------------------


def test_test_event_is_acknowledged(s3_endpoint: str, queue: str) -> None:
    sink = Sink()
    source = source_for(s3_endpoint, queue, sink)

    source.poll_once()

    assert source.stats.test_events == 1
    assert sink.events == [] and sink.rejected == []
    assert queue_depth(s3_endpoint, queue) == (0, 0)


def test_notification_is_ingested_then_deleted(
    s3_endpoint: str, s3_client: Any, queue: str
) -> None:
    sink = Sink()
    source = source_for(s3_endpoint, queue, sink)
    s3_client.put_object(Bucket="data", Key="incoming/my photos/été.zip", Body=b"zip")
    s3_client.put_object(Bucket="data", Key="elsewhere/x.zip", Body=b"filtered out")

    poll_until(source, lambda: bool(sink.events))

    assert [(e.bucket, e.key, e.event_name) for e in sink.events] == [
        ("data", "incoming/my photos/été.zip", "ObjectCreated:Put")
    ]
    assert queue_depth(s3_endpoint, queue) == (0, 0)


def test_message_stays_in_the_queue_when_ingest_fails(
    s3_endpoint: str, s3_client: Any, queue: str
) -> None:
    sink = Sink()
    source = source_for(s3_endpoint, queue, sink)
    source.poll_once()  # the TestEvent
    sink.fail = 1
    s3_client.put_object(Bucket="data", Key="incoming/a.zip", Body=b"zip")

    source.poll_once()

    assert source.stats.ingest_failures == 1 and sink.events == []
    assert sum(queue_depth(s3_endpoint, queue)) == 1  # not deleted
    source.poll_once()
    assert [e.key for e in sink.events] == ["incoming/a.zip"]
    assert queue_depth(s3_endpoint, queue) == (0, 0)


def test_malformed_message_is_kept_recorded_once_and_parked_after_max_receive(
    s3_endpoint: str, s3_client: Any, sqs_client: Any, queue: str
) -> None:
    sink = Sink()
    source = source_for(s3_endpoint, queue, sink, max_receive=2)
    sqs_client.send_message(QueueUrl=queue, MessageBody="not json")
    s3_client.put_object(Bucket="data", Key="incoming/behind.zip", Body=b"zip")

    poll_until(source, lambda: source.stats.parked == 1)

    assert [e.key for e in sink.events] == ["incoming/behind.zip"]  # not blocked by it
    assert source.stats.rejected == 3  # delivered max_receive + 1 times, then parked
    assert len(sink.rejected) == 1
    assert sink.rejected[0][:2] == (NAME, "not json")
    assert "not JSON" in sink.rejected[0][2]
    assert queue_depth(s3_endpoint, queue) == (0, 1)  # still there, hidden, not deleted
    for _ in range(3):
        source.poll_once()
    assert source.stats.rejected == 3  # no longer retried


def test_a_message_with_good_and_bad_records_stores_the_good_and_records_the_bad(
    s3_endpoint: str, sqs_client: Any, queue: str
) -> None:
    sink = Sink()
    source = source_for(s3_endpoint, queue, sink)
    source.poll_once()  # the TestEvent
    body = notification("data", "incoming/good.zip")
    bad = json.loads(json.dumps(body["Records"][0]))
    bad["s3"]["object"]["size"] = 2**64
    body["Records"].append(bad)
    sqs_client.send_message(QueueUrl=queue, MessageBody=json.dumps(body))

    source.poll_once()

    assert [e.key for e in sink.events] == ["incoming/good.zip"]
    [(name, excerpt, reason)] = sink.rejected
    assert name == NAME and '"size": 18446744073709551616' in excerpt
    assert reason.startswith("Records[1].s3.object.size: 18446744073709551616 is more than")
    assert queue_depth(s3_endpoint, queue) == (0, 0)  # settled: deleted, not looping


def test_a_message_nested_too_deeply_is_parked_like_any_unparseable_one(
    s3_endpoint: str, sqs_client: Any, queue: str
) -> None:
    sink = Sink()
    source = source_for(s3_endpoint, queue, sink, max_receive=1)
    source.poll_once()  # the TestEvent
    sqs_client.send_message(QueueUrl=queue, MessageBody="[" * 100_000 + "]" * 100_000)

    poll_until(source, lambda: source.stats.parked == 1)

    assert len(sink.rejected) == 1 and "nested too deeply" in sink.rejected[0][2]


def test_redrive_policy_moves_a_malformed_message_to_the_dead_letter_queue(
    s3_endpoint: str, sqs_client: Any
) -> None:
    queue = make_bucket_with_queue(s3_endpoint, "data", visibility_timeout_s=0, dead_letter_after=2)
    dlq = sqs_client.get_queue_url(QueueName="data-events-dlq")["QueueUrl"]
    sink = Sink()
    source = source_for(s3_endpoint, queue, sink, max_receive=2)
    sqs_client.send_message(QueueUrl=queue, MessageBody='{"Records": "nope"}')

    poll_until(source, lambda: queue_depth(s3_endpoint, dlq)[0] == 1)

    assert source.stats.parked == 0
    assert queue_depth(s3_endpoint, queue) == (0, 0)
    assert len(sink.rejected) == 1


def test_events_are_committed_to_the_inbox_before_the_message_goes(
    s3_endpoint: str, s3_client: Any, queue: str, tmp_path: Path
) -> None:
    inbox = Inbox(Database(f"sqlite:///{tmp_path / 'inbox.db'}"))
    client = make_sqs_client(queue, S3Storage(endpoint_url=s3_endpoint), wait_time_s=0)
    seen_depth: list[int] = []

    def ingest(events: Sequence[S3Event], source: str) -> list[Any]:
        records = inbox.record(events, source)
        seen_depth.append(sum(queue_depth(s3_endpoint, queue)))  # still queued here
        return records

    source = SqsSource(NAME, client, queue, ingest, reject=inbox.record_rejected, wait_time_s=0)
    s3_client.put_object(Bucket="data", Key="incoming/x.zip", Body=b"zip")
    aws_client("sqs", s3_endpoint).send_message(QueueUrl=queue, MessageBody="{}")

    poll_until(source, lambda: bool(seen_depth) and bool(inbox.list(outcome="rejected")[1]))

    assert seen_depth[0] >= 1
    events, _ = inbox.list(source=NAME)
    assert {(e.outcome, e.key) for e in events} == {
        (Outcome.PENDING.value, "incoming/x.zip"),
        (Outcome.REJECTED.value, None),
    }


def test_source_keeps_polling_through_queue_failures_and_stops(
    s3_endpoint: str, sqs_client: Any
) -> None:
    queue_url = f"{s3_endpoint}/{ACCOUNT_ID}/late-queue"  # not created yet: receives fail
    sink = Sink()
    source = source_for(s3_endpoint, queue_url, sink, wait_time_s=1, backoff_s=(0.05, 0.2))
    source.start()
    try:
        wait_until(lambda: source.stats.receive_failures >= 2, "failed receives")
        assert sqs_client.create_queue(QueueName="late-queue")["QueueUrl"] == queue_url
        sqs_client.send_message(
            QueueUrl=queue_url, MessageBody=json.dumps(notification("data", "incoming/a.zip"))
        )
        wait_until(lambda: bool(sink.events), "the event after the queue appeared")
    finally:
        source.stop()
    wait_until(lambda: not polling_threads(), "the polling thread to end")


def test_unreachable_queue_endpoint_is_retried_not_fatal(s3_endpoint: str) -> None:
    queue_url = f"http://127.0.0.1:{free_port()}/{ACCOUNT_ID}/q"
    storage = S3Storage(endpoint_url=s3_endpoint, max_attempts=1)
    client = make_sqs_client(queue_url, storage, wait_time_s=0)
    source = SqsSource(
        NAME, client, queue_url, Sink().ingest, wait_time_s=0, backoff_s=(0.01, 0.05)
    )
    source.start()
    try:
        wait_until(lambda: source.stats.receive_failures >= 3, "repeated failed receives")
    finally:
        source.stop()


def test_nothing_is_ingested_after_stop_returns(
    s3_endpoint: str, sqs_client: Any, queue: str
) -> None:
    sink = Sink()
    source = source_for(s3_endpoint, queue, sink, wait_time_s=2)
    source.start()
    wait_until(lambda: source.stats.test_events == 1, "the TestEvent")
    source.stop()
    body = json.dumps(notification("data", "incoming/late.zip"))
    sqs_client.send_message(QueueUrl=queue, MessageBody=body)

    # The long poll that was waiting at stop() may still return the message: it must be
    # given back, not ingested.
    wait_until(lambda: not polling_threads(), "the polling thread to end")
    assert sink.events == []
    assert sum(queue_depth(s3_endpoint, queue)) == 1


def test_configured_source_reads_the_queue_with_its_store_credentials(
    s3_endpoint: str, queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")  # only the store's secret holds credentials
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    stores = {"lake": StoreConfig(type="s3", endpoint_url=s3_endpoint, credentials="secret:k")}
    config = SourceConfig(type="sqs", store="lake", queue_url=queue, max_receive=3)
    sink = Sink()

    source = SqsSource.from_config(
        NAME, config, stores, {"secret:k": "id:key"}.__getitem__, sink.ingest, wait_time_s=0
    )
    source.poll_once()

    assert source.max_receive == 3
    assert source.stats.test_events == 1


def test_configured_source_needs_a_queue_url_and_an_s3_store(tmp_path: Path) -> None:
    stores = {"local": StoreConfig(type="local", root=str(tmp_path))}
    with pytest.raises(ConfigError, match="queue_url"):
        SqsSource.from_config(NAME, SourceConfig(type="sqs"), stores, str, Sink().ingest)
    with pytest.raises(ConfigError, match="not a configured s3 store"):
        SqsSource.from_config(
            NAME,
            SourceConfig(type="sqs", store="local", queue_url="http://127.0.0.1:1/1/q"),
            stores,
            str,
            Sink().ingest,
        )
