"""A handler that creates several jobs for one event gets each of them, exactly once.

The whole service runs (API on a real port, pipeline started; the executor is left idle so
the jobs stay `new`); events arrive through the webhook. Each handler call is an idempotency
scope: the n-th job it creates through the SDK carries the event's key + `-n`, so a handler
run again on the same event (after a crash) sends the same keys and creates nothing new.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from autoinfer.config import Config, StoreConfig, TriggerConfig
from autoinfer.events.model import parse_notification
from autoinfer.jobs.service import deterministic_job_id
from autoinfer.service import AutoInferService
from autoinfer.triggers import LambdaContext
from tests.conftest import serving_api_and_events

API_KEY = "test-api-key"

# Two jobs per uploaded archive: one through the async client, one through the sync wrapper
# (each runs the SDK call in a copy of the handler's context), or both through one of them.
HANDLERS = {
    "async": """
        import asyncio
        from autoinfer import AutoInfer

        async def create_both(context, stem):
            client = AutoInfer(url=context.autoinfer_url, key="%(key)s")
            for part in ("left", "right"):
                await client.jobs.create(
                    name=f"{stem}-{part}",
                    data=dict(input_uri=f"s3://data/{stem}.zip", output_uri="s3://data/out"),
                    model=dict(source_type="builtin", source_uri="efficientnet_lite0"),
                )

        def handler(event, context):
            key = event["Records"][0]["s3"]["object"]["key"]
            asyncio.run(create_both(context, key.split("/")[-1].split(".")[0]))
        """,
    "sync": """
        from autoinfer.sdk import SyncAutoInfer

        def handler(event, context):
            key = event["Records"][0]["s3"]["object"]["key"]
            stem = key.split("/")[-1].split(".")[0]
            client = SyncAutoInfer(context.autoinfer_url, "%(key)s")
            for part in ("left", "right"):
                client.jobs.create(
                    name=f"{stem}-{part}",
                    data=dict(input_uri=f"s3://data/{stem}.zip", output_uri="s3://data/out"),
                    model=dict(source_type="builtin", source_uri="efficientnet_lite0"),
                )
        """,
}

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
                "object": {"key": "incoming/pair.zip", "size": 3, "eTag": "0cc175b9c0f1b6a8"},
            },
        }
    ]
}


@pytest.fixture(params=sorted(HANDLERS))
def service(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AutoInferService]:
    (tmp_path / "buckets" / "data").mkdir(parents=True)
    handler_file = tmp_path / "two_jobs.py"
    handler_file.write_text(textwrap.dedent(HANDLERS[request.param] % {"key": API_KEY}))
    config = Config(
        data_dir=tmp_path / "state",
        api_key=API_KEY,
        stores={"local": StoreConfig(type="local", root=str(tmp_path / "buckets"))},
        triggers=[
            TriggerConfig(
                name="two-jobs",
                bucket="data",
                prefix="incoming/",
                handler=f"{handler_file}:handler",
            )
        ],
    )
    service = AutoInferService(config)
    with serving_api_and_events(service):
        yield service


def post_event(service: AutoInferService) -> dict:
    assert service.url is not None
    response = httpx.post(
        f"{service.url}/v1/events/s3",
        json=EVENT,
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    [summary] = response.json()["events"]
    return summary


def job_names(service: AutoInferService) -> list[str]:
    jobs, _ = service.jobs.list()
    return sorted(job.name for job in jobs)


def test_handler_creating_two_jobs_for_one_event_gets_two_jobs(
    service: AutoInferService,
) -> None:
    summary = post_event(service)

    assert summary["outcome"] == "matched", summary
    assert job_names(service) == ["pair-left", "pair-right"]
    jobs, _ = service.jobs.list()
    [trigger] = service.pipeline.triggers
    [event] = parse_notification(EVENT).events
    key = trigger.idempotency_key(event)
    by_name = {job.name: job.id for job in jobs}
    # The first job keeps the plain key: the event names it as the job its handler created.
    assert by_name["pair-left"] == deterministic_job_id("api", key) == summary["job_id"]
    assert by_name["pair-right"] == deterministic_job_id("api", f"{key}-2")


def test_handler_run_again_on_the_same_event_creates_no_new_jobs(
    service: AutoInferService,
) -> None:
    post_event(service)
    [event] = parse_notification(EVENT).events
    [trigger] = service.pipeline.triggers

    # What the dispatcher does when it settles the event again after a crash.
    trigger.call_handler(
        event,
        LambdaContext(function_name=trigger.name, aws_request_id="2", autoinfer_url=service.url),
    )
    # And a redelivery through the webhook is a duplicate, which runs no handler.
    assert post_event(service)["outcome"] == "duplicate"

    assert job_names(service) == ["pair-left", "pair-right"]
