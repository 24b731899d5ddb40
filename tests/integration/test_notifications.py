"""Completion notifications: signed webhooks verified with `standardwebhooks`, durable and
retried until the receiver is there, visible and redeliverable through the API and CLI."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import SEED_ZIP, RunningService
from tests.support.webhook_receiver import WebhookReceiver, new_secret

FAST_RETRY = {"backoff_s": 0.05, "max_backoff_s": 0.2}


def _store(tmp_path: Path) -> dict[str, Any]:
    root = tmp_path / "buckets"
    (root / "data" / "incoming").mkdir(parents=True)
    shutil.copy(SEED_ZIP, root / "data" / "incoming" / "seed.zip")
    return {"local": {"type": "local", "root": str(root)}}


def _classify(tmp_path: Path, name: str, input_name: str = "seed.zip") -> dict[str, Any]:
    root = tmp_path / "buckets" / "data"
    return {
        "name": name,
        "model": {"source_type": "builtin", "source_uri": "efficientnet_lite0"},
        "data": {
            "input_uri": str(root / "incoming" / input_name),
            "output_uri": str(root / "processed"),
        },
    }


def _notifications(running: RunningService, **params: Any) -> list[dict[str, Any]]:
    response = httpx.get(
        running.url + "/v1/notifications", params=params, headers=running.headers, timeout=10
    )
    response.raise_for_status()
    return response.json()["notifications"]


def _wait(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_receiver_that_was_down_gets_exactly_one_signed_job_finished(
    start_service: Callable[..., RunningService], tmp_path: Path
) -> None:
    secret = new_secret()
    receiver = WebhookReceiver(secret)  # down: nothing listens on its port yet
    running = start_service(
        stores=_store(tmp_path),
        notifications=[{"name": "done", "url": receiver.url, "secret": secret, **FAST_RETRY}],
    )
    job = running.client().jobs.create_from_spec(_classify(tmp_path, "down-then-up"))
    job.wait_for("finished", timeout=180)

    def failed_twice() -> bool:
        (notification,) = _notifications(running)
        return notification["attempts"] >= 2 and notification["status"] == "pending"

    _wait(failed_twice, "two refused delivery attempts")
    receiver.start()
    try:
        receiver.wait_for(1)
        _wait(lambda: _notifications(running)[0]["status"] == "delivered", "delivered")
        (notification,) = _notifications(running)
        assert len(receiver.deliveries) == 1
        assert receiver.webhook_ids() == {notification["webhook_id"]}
        assert notification["attempts"] >= 3
        body = receiver.deliveries[0].body
        assert body["type"] == "job.finished"
        data = body["data"]
        assert data["id"] == job.id and data["status"] == "finished"
        assert data["output_location"] == job.refresh().output_location
        assert data["output_location"].endswith("processed/down-then-up.zip")
        assert data["items"] == {"ok": 5, "error": 0}
        assert data["model"]["name"] == "efficientnet_lite0"
        assert data["reason"] is None and data["event"] is None and data["trigger"] is None
    finally:
        receiver.stop()


def test_a_failing_job_sends_a_signed_job_failed_with_its_reason(
    start_service: Callable[..., RunningService], tmp_path: Path
) -> None:
    secret = new_secret()
    receiver = WebhookReceiver(secret).start()
    other = WebhookReceiver(new_secret()).start()  # wants finished jobs only
    try:
        running = start_service(
            stores=_store(tmp_path),
            notifications=[
                {"name": "all", "url": receiver.url, "secret": secret, **FAST_RETRY},
                {
                    "name": "finished-only",
                    "url": other.url,
                    "secret": new_secret(),
                    "events": ["job.finished"],
                },
            ],
        )
        job = running.client().jobs.create_from_spec(
            _classify(tmp_path, "no-input", input_name="missing.zip")
        )
        (delivery,) = receiver.wait_for(1)
        assert delivery.body["type"] == "job.failed"
        assert delivery.body["data"]["status"] == "failed"
        assert delivery.body["data"]["id"] == job.id
        reason = job.refresh().reason
        assert reason and delivery.body["data"]["reason"] == reason
        assert [n["target"] for n in _notifications(running)] == ["all"]
        assert other.deliveries == [] and other.rejected == 0
    finally:
        receiver.stop()
        other.stop()


def test_a_delivered_notification_can_be_redelivered_from_the_cli_with_the_same_id(
    start_service: Callable[..., RunningService], tmp_path: Path
) -> None:
    secret = new_secret()
    receiver = WebhookReceiver(secret).start()
    try:
        running = start_service(
            stores=_store(tmp_path),
            notifications=[{"name": "done", "url": receiver.url, "secret": secret}],
        )
        running.client().jobs.create_from_spec(_classify(tmp_path, "again"))
        receiver.wait_for(1, timeout=180)
        _wait(lambda: _notifications(running)[0]["status"] == "delivered", "delivered")
        (notification,) = _notifications(running, status="delivered")

        cli = [sys.executable, "-m", "autoinfer.cli", "notifications"]
        listed = subprocess.run(
            [*cli, "list", "--status", "delivered"],
            env={**running.cli_env(), "COLUMNS": "200"},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert "job.finished" in listed.stdout and "delivered" in listed.stdout
        subprocess.run(
            [*cli, "redeliver", str(notification["id"])],
            env=running.cli_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        receiver.wait_for(2)
        assert [d.webhook_id for d in receiver.deliveries] == [notification["webhook_id"]] * 2

        metrics = httpx.get(running.url + "/metrics", headers=running.headers).text
        assert 'autoinfer_notifications{status="pending"} 0.0' in metrics
        assert 'autoinfer_notifications{status="failed"} 0.0' in metrics
        assert 'autoinfer_notification_deliveries_total{outcome="delivered"} 2.0' in metrics
    finally:
        receiver.stop()


def test_notifications_of_an_unknown_id_and_a_bad_status_are_refused(
    start_service: Callable[..., RunningService],
) -> None:
    running = start_service()
    missing = httpx.post(
        running.url + "/v1/notifications/99/redeliver", headers=running.headers, timeout=10
    )
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == "notification 99: no such notification"
    bad = httpx.get(
        running.url + "/v1/notifications", params={"status": "lost"}, headers=running.headers
    )
    assert bad.status_code == 422
