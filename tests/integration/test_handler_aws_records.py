"""The reference workflow's own Lambda handler (trainML's `bucket_trigger.py`), with only its
import and client constructor changed, makes the right job when the store percent-encodes
`/` in notification keys, as moto's server does (`incoming%2Fimages.zip`).

moto is the S3, SQS and SSM endpoint, used as a user would: the handler reads its API key
from SSM Parameter Store with boto3 at import time, the bucket's notifications go to an SQS
queue, autoinfer's sqs source reads the queue and calls the handler. No executor runs: the
job the handler creates stays `new`.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from autoinfer.config import Config
from autoinfer.service import AutoInferService
from tests.conftest import serving_api_and_events
from tests.s3_server import aws_client, make_bucket_with_queue
from tests.support.waiting import wait_until

API_KEY = "key-from-parameter-store"
KEY = "incoming/images-2026-11-24_10-00-00.zip"

# trainML's inference/s3_triggered/lambda/bucket_trigger.py; only the import and the client
# constructor changed. It uses the key exactly as the notification gives it, as code written
# for AWS may: right on AWS for keys like these, wrong where `/` arrives as `%2F`.
HANDLER = """\
import re
import boto3
import os
import asyncio
from autoinfer import AutoInfer  # was: from trainml import TrainML

ssm_client = boto3.client('ssm')
s3_client = boto3.client('s3')

trainml_user= ssm_client.get_parameter(
    Name=os.environ.get("TRAINML_USER_PATH"),
    WithDecryption=True
).get("Parameter").get("Value")
trainml_key= ssm_client.get_parameter(
    Name=os.environ.get("TRAINML_KEY_PATH"),
    WithDecryption=True
).get("Parameter").get("Value")

trainml_client = AutoInfer(url=os.environ["AUTOINFER_URL"], key=trainml_key)  # was: TrainML(user=trainml_user, key=trainml_key)

async def create_job(input_uri, output_uri):
    print(input_uri)
    print(output_uri)

    job = await trainml_client.jobs.create(
        name=f"Inference {input_uri}",
        type="inference",
        gpu_type="RTX 2080 Ti",
        gpu_count=1,
        disk_size=1,
        workers=[
            "python inference/s3_triggered/trainml_model/predict.py",
        ],
        data=dict(
            input_type="aws",
            input_uri=input_uri,
            output_type="aws",
            output_uri=output_uri,
        ),
        model=dict(source_type="git", source_uri="https://github.com/trainML/examples.git"),
    )
    return job

def lambda_handler(event):
    print(event)
    for record in event["Records"]:
        input_uri = f"s3://{record['s3']['bucket']['name']}/{record['s3']['object']['key']}"
        output_key = "processed/" + re.sub(r"incoming\\/", "", record["s3"]["object"]["key"])
        output_uri = f"s3://{record['s3']['bucket']['name']}/{output_key}"
        job = asyncio.run(create_job(input_uri,output_uri))
        print(job.id)
"""


@pytest.fixture
def service(
    s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[AutoInferService]:
    monkeypatch.delenv("AUTOINFER_API_KEY", raising=False)
    # The handler's boto3 clients, like a Lambda function's, find their endpoint in the
    # environment; here it is moto's.
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    ssm = aws_client("ssm", s3_endpoint)
    ssm.put_parameter(Name="/trainml/user", Value="someone@example.com", Type="SecureString")
    ssm.put_parameter(Name="/trainml/key", Value=API_KEY, Type="SecureString")
    monkeypatch.setenv("TRAINML_USER_PATH", "/trainml/user")
    monkeypatch.setenv("TRAINML_KEY_PATH", "/trainml/key")
    queue_url = make_bucket_with_queue(s3_endpoint, "data", prefix="incoming/", suffix=".zip")
    handler = tmp_path / "bucket_trigger.py"
    handler.write_text(HANDLER)
    # The handler builds its client when it is imported (when the service loads its
    # triggers), so the service's URL must be known first.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    monkeypatch.setenv("AUTOINFER_URL", f"http://127.0.0.1:{sock.getsockname()[1]}")
    config = Config.model_validate(
        {
            "data_dir": str(tmp_path / "state"),
            "api_key": API_KEY,
            "stores": {"lake": {"type": "s3", "endpoint_url": s3_endpoint, "region": "us-east-1"}},
            "sources": [{"type": "sqs", "store": "lake", "queue_url": queue_url, "wait_time_s": 1}],
            "triggers": [
                {
                    "name": "trainml-bucket-trigger",
                    "bucket": "data",
                    "prefix": "incoming/",
                    "suffix": ".zip",
                    "handler": f"{handler}:lambda_handler",
                }
            ],
        }
    )
    with serving_api_and_events(AutoInferService(config), sock) as running:
        yield running


def test_reference_handler_gets_aws_keys_from_a_store_that_encodes_slashes(
    service: AutoInferService, s3_endpoint: str
) -> None:
    aws_client("s3", s3_endpoint).put_object(Bucket="data", Key=KEY, Body=b"PK\x05\x06" + bytes(18))

    jobs = wait_until(lambda: service.jobs.list()[0], "the handler's job")
    [event] = [e for e in service.pipeline.inbox.list()[0] if e.key == KEY]
    # What moto sent: the slash percent-encoded (AWS writes it literally).
    assert event.raw["s3"]["object"]["key"] == "incoming%2Fimages-2026-11-24_10-00-00.zip"

    [job] = jobs
    assert job.name == f"Inference s3://data/{KEY}"
    assert job.spec["data"]["input_uri"] == f"s3://data/{KEY}"
    assert job.spec["data"]["output_uri"] == "s3://data/processed/images-2026-11-24_10-00-00.zip"
    assert job.spec["resources"]["gpu_type"] == "RTX 2080 Ti"
    settled = wait_until(
        lambda: (e := service.pipeline.inbox.get(event.id)).outcome == "matched" and e,
        "the event to settle",
    )
    assert settled.job_id == job.id
