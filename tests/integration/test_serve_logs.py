"""`autoinfer serve --log-format json`: every line the service writes is a JSON object, and the
lines about an event or a job carry its id."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.support.bucket_archives import archive
from tests.support.serve_process import WEBHOOK_TOKEN, Replica


def test_json_logs_name_the_event_and_the_job_they_are_about(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "run.sh").write_text('echo ok > "$AUTOINFER_OUTPUT_PATH/out.txt"\n')
    settings = {
        "stores": {"local": {"type": "local", "root": str(tmp_path / "buckets")}},
        "sources": [{"type": "webhook", "store": "local", "token": WEBHOOK_TOKEN}],
        "triggers": [
            {
                "name": "run-incoming",
                "bucket": "data",
                "prefix": "incoming/",
                "suffix": ".zip",
                "job": {
                    "model": {"source_type": "local", "source_uri": str(model)},
                    "workers": ["sh run.sh"],
                    "data": {"input_uri": "{uri}", "output_uri": "{bucket_uri}/processed"},
                },
            }
        ],
        "allowed_paths": [str(tmp_path)],
    }
    config = tmp_path / "autoinfer.yaml"
    config.write_text(yaml.safe_dump(settings))
    env = {**os.environ, "AUTOINFER_API_KEY": "ai_logs-test-key"}
    replica = Replica("serve", config, tmp_path, env, extra_args=["--log-format", "json"])
    try:
        replica.wait_ready()
        notification = archive(tmp_path / "buckets" / "data" / "incoming" / "a.zip", {"x": "1"})
        assert replica.deliver(notification) == 200
        headers = {"Authorization": "Bearer ai_logs-test-key"}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            jobs = httpx.get(replica.url + "/v1/jobs", headers=headers, timeout=10).json()["jobs"]
            if jobs and jobs[0]["status"] == "finished":
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"the job did not finish:\n{replica.log_tail()}")
    finally:
        replica.stop()
    text = replica.log_path.read_text()
    entries = [json.loads(line) for line in text.splitlines()]  # every line is JSON
    assert {"time", "level", "logger", "message"} <= set(entries[0])
    assert any(e["logger"].startswith("uvicorn") for e in entries), text
    [created] = [e for e in entries if "created job" in e["message"]]
    assert created["event_id"] and created["job_id"] == jobs[0]["id"]
    assert created["event_id"] == str(jobs[0]["event_id"])
