"""Dead letters: the failed jobs of a trigger, listed and re-queued by a redrive."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from autoinfer.config import SourceConfig, StoreConfig, TriggerConfig
from tests.conftest import RunningService
from tests.support.service_harness import make_object, notification, record_for

TOKEN = "redrive-webhook-token"


@pytest.fixture
def service(start_service: Callable[..., RunningService], tmp_path: Path) -> RunningService:
    (tmp_path / "buckets" / "data").mkdir(parents=True)
    trigger = TriggerConfig(
        name="classify",
        bucket="data",
        prefix="incoming/",
        suffix=".zip",
        max_attempts=1,
        job={
            "name": "{key_stem}",
            "data": {"input_uri": "{uri}", "output_uri": "{bucket_uri}/processed"},
        },
    )
    return start_service(
        stores={"local": StoreConfig(type="local", root=str(tmp_path / "buckets"))},
        sources=[SourceConfig(type="webhook", store="local", token=TOKEN)],
        triggers=[trigger],
    )


def deliver(service: RunningService, key: str) -> None:
    body = notification(record_for("data", key, b"announced, never written"))
    response = httpx.post(
        service.url + "/v1/events/s3", content=body, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert response.status_code == 200, response.text


def wait_for_status(service: RunningService, status: str, count: int) -> list[dict]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        page = httpx.get(
            service.url + "/v1/jobs",
            params={"status": status, "source": "trigger:classify"},
            headers=service.headers,
        ).json()
        if page["total"] == count:
            return page["jobs"]
        time.sleep(0.1)
    raise AssertionError(f"{count} jobs never reached {status!r}")


def test_redrive_requeues_every_dead_letter_of_the_trigger(
    service: RunningService, tmp_path: Path
) -> None:
    for name in ("a", "b", "c"):
        deliver(service, f"incoming/{name}.zip")  # announced, but never written: each job fails
    dead = wait_for_status(service, "failed", 3)
    assert all("no such file" in job["reason"] for job in dead)
    for name in ("a", "b"):  # two of them now exist
        make_object(tmp_path / "buckets", "data", f"incoming/{name}.zip", 1)

    result = service.client().triggers.redrive("classify")

    assert result["trigger"] == "classify" and result["requeued"] == 3
    assert sorted(result["job_ids"]) == sorted(job["id"] for job in dead)
    finished = wait_for_status(service, "finished", 2)
    assert sorted(job["name"] for job in finished) == ["a", "b"]
    [still_dead] = wait_for_status(service, "failed", 1)
    assert still_dead["name"] == "c" and still_dead["attempt"] == 2


def test_redrive_of_an_unknown_trigger_is_not_found(service: RunningService) -> None:
    response = httpx.post(service.url + "/v1/triggers/nope/redrive", headers=service.headers)
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "trigger 'nope': no such trigger"


def test_cli_events_redrive_reports_how_many_jobs_were_requeued(service: RunningService) -> None:
    deliver(service, "incoming/gone.zip")
    wait_for_status(service, "failed", 1)

    result = subprocess.run(
        [sys.executable, "-m", "autoinfer.cli", "events", "redrive", "--trigger", "classify"],
        env=service.cli_env(),
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "re-queued 1 failed job(s) of trigger classify"
    again = subprocess.run(
        [sys.executable, "-m", "autoinfer.cli", "events", "redrive", "--trigger", "nope"],
        env=service.cli_env(),
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 1
    assert "trigger 'nope': no such trigger" in again.stderr
