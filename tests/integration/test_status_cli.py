"""`autoinfer status` and `GET /v1/status`: the service at a glance."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx

from autoinfer.config import Config, SourceConfig, StoreConfig, TriggerConfig
from tests.conftest import RunningService
from tests.s3_server import free_port

CLI = [sys.executable, "-m", "autoinfer.cli"]


def start(tmp_path: Path, make_config: Callable[..., Config], start_service) -> RunningService:  # type: ignore[no-untyped-def]
    config = make_config(
        stores={"local": StoreConfig(type="local", root=str(tmp_path / "buckets"))},
        sources=[SourceConfig(type="webhook", store="local", token="t0ken-for-status")],
        triggers=[
            TriggerConfig(
                name="classify-incoming",
                bucket="data",
                prefix="incoming/",
                suffix=".zip",
                job={"data": {"input_uri": "{uri}", "output_uri": "{bucket_uri}/processed"}},
            )
        ],
    )
    return start_service(config)


def test_status_shows_sources_triggers_queue_and_workers(
    tmp_path: Path, make_config: Callable[..., Config], start_service
) -> None:  # type: ignore[no-untyped-def]
    api = start(tmp_path, make_config, start_service)
    api.client().jobs.create_from_spec(
        {
            "name": "queued",
            "data": {"input_uri": str(tmp_path / "nowhere.zip"), "output_uri": str(tmp_path)},
        }
    )
    result = subprocess.run(
        [*CLI, "status"],
        check=False,
        capture_output=True,
        text=True,
        env={**api.cli_env(), "COLUMNS": "200"},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("ok  autoinfer ") and "database sqlite" in out
    assert "sources: webhook:local" in out
    assert "classify-incoming" in out and "incoming/" in out
    assert "executor: " in out and "/2 jobs running" in out
    as_json = subprocess.run(
        [*CLI, "status", "--json"],
        check=False,
        capture_output=True,
        text=True,
        env=api.cli_env(),
        timeout=60,
    )
    data = json.loads(as_json.stdout)
    assert data == {**data, "status": "ok", "database": "sqlite"}
    assert data["sources"] == [{"name": "webhook:local", "type": "webhook", "store": "local"}]
    assert [t["name"] for t in data["triggers"]] == ["classify-incoming"]
    assert sum(data["queue"]["jobs"].values()) == 1
    assert data["replica"] == api.service.executor.owner


def test_status_needs_a_key(api: RunningService) -> None:
    assert httpx.get(api.url + "/v1/status", timeout=10).status_code == 401
    assert httpx.get(api.url + "/v1/status", headers=api.headers, timeout=10).status_code == 200


def test_status_of_a_service_that_is_down_is_one_line_and_exit_1() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    # Wide: rich wraps stderr at the terminal's width (80 columns on a pipe).
    env = {**os.environ, "AUTOINFER_URL": url, "AUTOINFER_KEY": "x", "COLUMNS": "300"}
    result = subprocess.run(
        [*CLI, "status"], check=False, capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: {url}: cannot reach the autoinfer service")
    assert len(result.stderr.strip().splitlines()) == 1
