"""A Lambda-style handler ported from trainML creates its job through the SDK, exactly once.

The whole service runs (API on a real port, pipeline started; the executor is left idle so
the job stays `new`); events arrive through the webhook.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from autoinfer.config import load_config
from autoinfer.events.model import parse_notification
from autoinfer.inbox import Inbox
from autoinfer.service import AutoInferService
from autoinfer.triggers import LambdaContext
from tests.conftest import serving_api_and_events

API_KEY = "test-api-key"

# A trainML S3-trigger Lambda function; only the import and the client constructor changed.
HANDLER = """
import asyncio
import json
import os
from urllib.parse import unquote_plus

from autoinfer import AutoInfer  # was: from trainml import TrainML


async def create_job(bucket, key):
    client = AutoInfer(url=os.environ["AUTOINFER_URL"], key=os.environ["AUTOINFER_KEY"])  # was: TrainML()
    name = key.split("/")[-1].split(".")[0]
    job = await client.jobs.create(
        name=name,
        type="inference",
        gpu_type="RTX 2080 Ti",
        gpu_count=1,
        disk_size=10,
        workers=["python predict.py"],
        data=dict(
            datasets=[],
            input_type="aws",
            input_uri=f"s3://{bucket}/{key}",
            output_type="aws",
            output_uri=f"s3://{bucket}/processed",
        ),
        model=dict(source_type="git", source_uri="https://github.com/trainML/examples.git"),
        environment=dict(type="DEEPLEARNING_PY39", env=[dict(key="JOB_NAME", value=name)]),
    )
    return job


def lambda_handler(event, context):
    record = event["Records"][0]
    bucket = record["s3"]["bucket"]["name"]
    key = unquote_plus(record["s3"]["object"]["key"])
    job = asyncio.run(create_job(bucket, key))
    return {"statusCode": 200, "body": json.dumps({"job_id": job.id, "name": job.name})}
"""

EVENT = {
    "Records": [
        {
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "awsRegion": "us-east-1",
            "eventTime": "2026-11-24T10:00:00.000Z",
            "eventName": "ObjectCreated:Put",
            "s3": {
                "bucket": {"name": "data"},
                "object": {
                    "key": "incoming/images-2026-11-24_10-00-00.zip",
                    "size": 2048,
                    "eTag": "0cc175b9c0f1b6a831c399e269772661",
                    "sequencer": "0055AED6DCD90281E5",
                },
            },
        }
    ]
}


@pytest.fixture
def service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AutoInferService]:
    (tmp_path / "buckets" / "data").mkdir(parents=True)
    (tmp_path / "lambda_function.py").write_text(textwrap.dedent(HANDLER))
    settings = {
        "data_dir": "state",
        "api_key": API_KEY,
        "stores": {"local": {"type": "local", "root": "buckets"}},
        "triggers": [
            {
                "name": "trainml-lambda",
                "bucket": "data",
                "prefix": "incoming/",
                "suffix": ".zip",
                "handler": "lambda_function.py:lambda_handler",
            }
        ],
    }
    path = tmp_path / "autoinfer.yaml"
    path.write_text(yaml.safe_dump(settings))
    monkeypatch.delenv("AUTOINFER_API_KEY", raising=False)
    service = AutoInferService(load_config(path, env={}))
    with serving_api_and_events(service):
        assert service.url is not None
        monkeypatch.setenv("AUTOINFER_URL", service.url)
        monkeypatch.setenv("AUTOINFER_KEY", API_KEY)
        yield service


def post_event(service: AutoInferService) -> httpx.Response:
    assert service.url is not None
    return httpx.post(
        f"{service.url}/v1/events/s3",
        json=EVENT,
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=60,
    )


def test_ported_trainml_handler_creates_the_job_with_trainml_argument_shapes(
    service: AutoInferService,
) -> None:
    response = post_event(service)
    assert response.status_code == 200, response.text
    [summary] = response.json()["events"]
    assert summary["outcome"] == "matched", summary
    jobs, total = service.jobs.list()
    assert total == 1
    job = jobs[0]
    assert job.name == "images-2026-11-24_10-00-00"
    assert summary["job_id"] == job.id  # the event names the job its handler created
    spec = job.spec
    assert spec["resources"]["gpu_count"] == 1
    assert spec["resources"]["gpu_type"] == "RTX 2080 Ti"
    assert spec["resources"]["disk_size"] == 10
    assert spec["workers"] == ["python predict.py"]
    assert spec["data"]["input_uri"] == "s3://data/incoming/images-2026-11-24_10-00-00.zip"
    assert spec["data"]["output_uri"] == "s3://data/processed"
    assert spec["model"]["source_type"] == "git"
    assert spec["environment"]["env"] == [
        {"key": "JOB_NAME", "value": "images-2026-11-24_10-00-00"}
    ]


def test_crash_after_the_handler_ran_and_redeliveries_still_make_one_job(
    service: AutoInferService,
) -> None:
    [event] = parse_notification(EVENT).events
    [trigger] = service.pipeline.triggers
    service.pipeline.stop()  # no background retry: this test dispatches by hand
    # The crash: the event was stored and its handler created the job, but the process died
    # before the event was settled. At the next start the handler runs again, same key.
    [stored] = Inbox(service.db).record([event], "webhook")
    trigger.call_handler(
        event, LambdaContext(function_name=trigger.name, aws_request_id=str(stored.id))
    )
    assert service.jobs.list()[1] == 1
    assert service.pipeline.dispatch_pending() == 1
    settled = service.pipeline.inbox.get(stored.id)
    assert settled.outcome == "matched"
    assert service.jobs.list()[1] == 1
    assert settled.job_id == service.jobs.list()[0][0].id
    # Later deliveries of the same event are duplicates.
    response = post_event(service)
    assert response.json()["events"][0]["outcome"] == "duplicate"
    assert service.jobs.list()[1] == 1
