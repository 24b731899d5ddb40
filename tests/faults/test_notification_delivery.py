"""Completion notifications survive the service: a job ends while its webhook receiver is
down and its SQS queue does not exist yet, the service is SIGKILLed before any delivery got
through, and after a restart both targets get the notification exactly once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.s3_server import ACCOUNT_ID, aws_client
from tests.support.service_harness import (
    ServiceProcess,
    classify_trigger,
    free_port,
    make_object,
    notification,
    service_config,
)
from tests.support.webhook_receiver import WebhookReceiver, new_secret

RETRY = {"backoff_s": 0.1, "max_backoff_s": 0.5}


def _notifications(service: ServiceProcess) -> list[dict[str, Any]]:
    return service.get("/v1/notifications", limit=100)["notifications"]


def test_notifications_pending_when_the_service_is_killed_are_delivered_once_after_restart(
    tmp_path: Path, model_cache: Path, s3_endpoint: str
) -> None:
    secret = new_secret()
    receiver = WebhookReceiver(secret)  # down: its port refuses connections
    queue_url = f"{s3_endpoint}/{ACCOUNT_ID}/job-events"  # the queue does not exist yet
    (tmp_path / "buckets").mkdir()
    config = service_config(
        tmp_path, port=free_port(), cache_dir=model_cache, triggers=[classify_trigger()]
    )
    config["notifications"] = [
        {"name": "hook", "url": receiver.url, "secret": secret, **RETRY},
        {"name": "queue", "type": "sqs", "queue_url": queue_url, **RETRY},
    ]
    service = ServiceProcess(config, tmp_path)
    try:
        service.start()
        record = make_object(tmp_path / "buckets", "data", "incoming/one.zip", 1)
        assert service.post_event(notification(record)).status_code == 200
        service.wait_for(lambda: service.count_jobs("finished") == 1, 180, "the job to finish")

        def both_refused() -> bool:
            pending = [n for n in _notifications(service) if n["status"] == "pending"]
            return len(pending) == 2 and all(n["attempts"] >= 1 for n in pending)

        service.wait_for(both_refused, 60, "both targets to refuse a delivery")
        before = {n["target"]: n for n in _notifications(service)}
        service.kill()

        receiver.start()
        sqs = aws_client("sqs", s3_endpoint)
        assert sqs.create_queue(QueueName="job-events")["QueueUrl"] == queue_url
        service.start()
        receiver.wait_for(1, timeout=120)
        service.wait_for(
            lambda: all(n["status"] == "delivered" for n in _notifications(service)),
            120,
            "both notifications to be delivered",
        )
        after = {n["target"]: n for n in _notifications(service)}
        assert set(after) == {"hook", "queue"}
        assert {t: n["webhook_id"] for t, n in after.items()} == {
            t: n["webhook_id"] for t, n in before.items()
        }

        (job,) = service.jobs()
        (delivery,) = receiver.deliveries
        assert delivery.webhook_id == after["hook"]["webhook_id"]
        body = delivery.body
        assert body["type"] == "job.finished"
        assert body["data"]["id"] == job["id"]
        assert body["data"]["output_location"] == job["output_location"]
        assert body["data"]["trigger"] == "classify"
        assert body["data"]["event"]["bucket"] == "data"
        assert body["data"]["event"]["key"] == "incoming/one.zip"
        assert body["data"]["items"] == {"ok": 1, "error": 0}

        messages = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
        ).get("Messages", [])
        assert len(messages) == 1
        (message,) = messages
        attributes = message["MessageAttributes"]
        assert attributes["webhook-id"]["StringValue"] == after["queue"]["webhook_id"]
        assert attributes["type"]["StringValue"] == "job.finished"
        assert json.loads(message["Body"])["data"] == body["data"]
    finally:
        service.close()
        receiver.stop()
