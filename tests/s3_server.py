"""Pytest plugin: moto's standalone server (S3, SQS, IAM) on a free loopback port.

`moto_server` starts `python -m moto.server` once per test session; `s3_endpoint` resets its
state and points the standard AWS variables at dummy credentials for one test, and yields
the endpoint URL. `make_bucket_with_queue` wires a bucket's notifications to an SQS queue.

moto's server does deliver S3 notifications to SQS queues itself (since moto 3.1.x, in
`moto/s3/notifications.py`): ObjectCreated Put/Post/Copy/CompleteMultipartUpload events
arrive in the queue in S3's format (key URL-encoded), and configuring a notification sends
S3's `s3:TestEvent` first, as AWS does. Filter rules (prefix/suffix) are honoured.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config as BotoConfig

ACCOUNT_ID = "123456789012"  # moto's default account
REGION = "us-east-1"
START_TIMEOUT_S = 60.0


@dataclass
class MotoServer:
    """A running `moto.server` process."""

    process: subprocess.Popen[bytes]
    endpoint: str
    log_path: Path

    def post(self, path: str, data: bytes = b"") -> dict[str, Any]:
        # Not form-encoded: Flask would swallow the body as a form.
        request = urllib.request.Request(
            self.endpoint + path,
            data=data,
            method="POST",
            headers={"Content-Type": "text/plain"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"{}")

    def reset(self) -> None:
        """Forget every bucket, queue, user... (moto's `/moto-api/reset`)."""
        self.post("/moto-api/reset")

    def require_auth(self, enabled: bool) -> None:
        """Make the server check signatures and IAM policies (off by default)."""
        self.post("/moto-api/reset-auth", b"0" if enabled else b"inf")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def free_port() -> int:
    """A TCP port nothing listens on right now (also what a test's "closed port" is)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_moto_server(log_path: Path, attempts: int = 3) -> MotoServer:
    """Start `python -m moto.server` on a free port; retry on another port if it is taken."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MOTO_"))}
    failures: list[str] = []
    for _ in range(attempts):
        port = free_port()
        log = log_path.open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        log.close()
        server = MotoServer(process, f"http://127.0.0.1:{port}", log_path)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and process.poll() is None:
            try:
                server.reset()
                return server
            except OSError:
                time.sleep(0.1)
        server.stop()
        failures.append(f"port {port}: exit code {process.returncode}")
    raise RuntimeError(f"moto server did not start ({'; '.join(failures)}):\n{server.log_tail()}")


def aws_client(service: str, endpoint: str, **credentials: str) -> Any:
    """A boto3 client for moto (path-style S3 addressing, the test region)."""
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        config=BotoConfig(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
        **credentials,
    )


def make_bucket_with_queue(
    endpoint: str,
    bucket: str,
    prefix: str = "incoming/",
    suffix: str = ".zip",
    *,
    queue_name: str | None = None,
    visibility_timeout_s: int | None = None,
    dead_letter_after: int | None = None,
) -> str:
    """Create `bucket` (if needed) and an SQS queue, and send the bucket's ObjectCreated
    events under `prefix` ending in `suffix` to the queue; returns the queue URL.

    The queue then holds S3's `s3:TestEvent`. `dead_letter_after=N` gives the queue a redrive
    policy moving a message to `<queue>-dlq` after N receives.
    """
    s3 = aws_client("s3", endpoint)
    sqs = aws_client("sqs", endpoint)
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(Bucket=bucket)
    name = queue_name or f"{bucket}-events"
    attributes: dict[str, str] = {}
    if visibility_timeout_s is not None:
        attributes["VisibilityTimeout"] = str(visibility_timeout_s)
    if dead_letter_after is not None:
        dlq_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
        dlq_arn = queue_arn(sqs, dlq_url)
        attributes["RedrivePolicy"] = json.dumps(
            {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(dead_letter_after)}
        )
    queue_url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    rules = [{"Name": "prefix", "Value": prefix}] if prefix else []
    rules += [{"Name": "suffix", "Value": suffix}] if suffix else []
    queue_config: dict[str, Any] = {
        "QueueArn": queue_arn(sqs, queue_url),
        "Events": ["s3:ObjectCreated:*"],
    }
    if rules:
        queue_config["Filter"] = {"Key": {"FilterRules": rules}}
    s3.put_bucket_notification_configuration(
        Bucket=bucket, NotificationConfiguration={"QueueConfigurations": [queue_config]}
    )
    return queue_url


def queue_arn(sqs: Any, queue_url: str) -> str:
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
    return str(attributes["Attributes"]["QueueArn"])


def queue_depth(endpoint: str, queue_url: str) -> tuple[int, int]:
    """(visible, in flight) messages in the queue."""
    attributes = aws_client("sqs", endpoint).get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return (
        int(attributes["ApproximateNumberOfMessages"]),
        int(attributes["ApproximateNumberOfMessagesNotVisible"]),
    )


@dataclass(frozen=True)
class AwsKeys:
    access_key_id: str
    secret_access_key: str

    @property
    def secret_value(self) -> str:
        """As an autoinfer `secret:NAME` holds them."""
        return f"{self.access_key_id}:{self.secret_access_key}"


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """moto's standalone server for the whole session (state is reset per test)."""
    log_path = tmp_path_factory.mktemp("moto") / "server.log"
    server = start_moto_server(log_path)
    yield server
    server.stop()


@pytest.fixture
def s3_endpoint(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """The moto endpoint URL, its state reset, with dummy credentials in the environment and
    the user's own AWS files, profile and endpoint variables out of the way."""
    moto_server.reset()
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return moto_server.endpoint


@pytest.fixture
def s3_client(s3_endpoint: str) -> Any:
    return aws_client("s3", s3_endpoint)


@pytest.fixture
def sqs_client(s3_endpoint: str) -> Any:
    return aws_client("sqs", s3_endpoint)


@pytest.fixture
def s3_auth(moto_server: MotoServer, s3_endpoint: str) -> Iterator[AwsKeys]:
    """moto checking credentials for this test: yields the keys of an IAM user allowed
    everything on buckets named `allowed-*` and nothing else."""
    iam = aws_client("iam", s3_endpoint)
    iam.create_user(UserName="autoinfer")
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "s3:*",
                "Resource": ["arn:aws:s3:::allowed-*", "arn:aws:s3:::allowed-*/*"],
            }
        ],
    }
    iam.put_user_policy(
        UserName="autoinfer", PolicyName="allowed-buckets", PolicyDocument=json.dumps(policy)
    )
    key = iam.create_access_key(UserName="autoinfer")["AccessKey"]
    moto_server.require_auth(True)
    try:
        yield AwsKeys(key["AccessKeyId"], key["SecretAccessKey"])
    finally:
        moto_server.require_auth(False)
