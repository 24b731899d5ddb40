"""Confined local paths where jobs are made by trigger rules, and `--insecure`'s freedom."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx

from autoinfer.config import SourceConfig, StoreConfig, TriggerConfig
from autoinfer.events.model import object_created, s3_record
from tests.conftest import RunningService

TOKEN = "confined-paths-token"


def rule_service(
    start_service: Callable[..., RunningService], tmp_path: Path, model: Path
) -> RunningService:
    return start_service(
        stores={"local": StoreConfig(type="local", root=str(tmp_path / "buckets"))},
        sources=[SourceConfig(type="webhook", store="local", token=TOKEN)],
        triggers=[
            TriggerConfig(
                name="run",
                bucket="data",
                prefix="incoming/",
                job={
                    "name": "{key_stem}",
                    "model": {"source_type": "local", "source_uri": str(model)},
                    "workers": ["true"],
                    "data": {"input_uri": "{uri}", "output_uri": "{bucket_uri}/out"},
                },
            )
        ],
        allowed_paths=[],  # only the store's root
    )


def deliver(api: RunningService, tmp_path: Path) -> dict:
    path = tmp_path / "buckets" / "data" / "incoming" / "x.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("x")
    event = object_created(
        "data",
        "incoming/x.txt",
        size=1,
        etag="9dd4e461268c8034f5c8564e155c67a6",
        modified=datetime.now(UTC),
    )
    response = httpx.post(
        f"{api.url}/v1/events/s3",
        json={"Records": [s3_record(event)]},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert response.status_code == 200, response.text
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        [record] = httpx.get(f"{api.url}/v1/events", headers=api.headers).json()["events"]
        if record["outcome"] != "pending":
            return httpx.get(f"{api.url}/v1/events/{record['id']}", headers=api.headers).json()
        time.sleep(0.1)
    raise AssertionError("the event was not dispatched")


def test_a_rule_whose_model_lies_outside_the_allowed_paths_makes_no_job(
    start_service: Callable[..., RunningService], tmp_path: Path
) -> None:
    api = rule_service(start_service, tmp_path, tmp_path / "model")
    event = deliver(api, tmp_path)
    assert event["outcome"] == "failed"
    [dispatch] = event["dispatches"]
    assert dispatch["job_id"] is None
    assert dispatch["error"] == (
        f"model.source_uri: {tmp_path / 'model'} must lie inside a local store root or "
        "allowed_paths; data_dir is never allowed"
    )


def test_a_rule_inside_the_store_makes_its_job(
    start_service: Callable[..., RunningService], tmp_path: Path
) -> None:
    api = rule_service(start_service, tmp_path, tmp_path / "buckets" / "models" / "m")
    event = deliver(api, tmp_path)
    assert event["outcome"] == "matched" and event["dispatches"][0]["job_id"]


def test_an_insecure_service_keeps_its_freedom(
    start_service: Callable[..., RunningService], tmp_path: Path
) -> None:
    api = start_service(insecure=True, allowed_paths=[])
    spec = {
        "name": "anywhere",
        "data": {"input_uri": "/etc/hostname", "output_uri": str(tmp_path / "out")},
    }
    assert httpx.post(f"{api.url}/v1/jobs", json=spec).status_code == 201
    secure = start_service(allowed_paths=[])
    response = httpx.post(f"{secure.url}/v1/jobs", json=spec, headers=secure.headers)
    assert response.status_code == 422
    assert response.json()["error"]["message"].startswith("data.input_uri: /etc/hostname must")
