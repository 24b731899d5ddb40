"""Reaching an SQS queue: its endpoint and region from its URL, and a client with a store's
credentials (the `sqs` source's, doctor's and the SQS notification target's)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from botocore.config import Config as BotoConfig

from autoinfer.errors import ConfigError
from autoinfer.storage.s3 import S3Storage

#: SQS's longest long poll.
MAX_WAIT_S = 20


def sqs_endpoint(queue_url: str) -> tuple[str | None, str | None]:
    """(endpoint URL, region) for a queue URL: an AWS queue URL gives its region and the
    default endpoint (AWS_ENDPOINT_URL_SQS still applies); any other host (ElasticMQ,
    LocalStack, moto) is itself the endpoint."""
    parts = urlsplit(queue_url)
    host = parts.hostname or ""
    if not parts.scheme or not host:
        raise ConfigError(f"{queue_url!r}: not a queue URL (expected http(s)://HOST/ACCOUNT/NAME)")
    if host.endswith((".amazonaws.com", ".amazonaws.com.cn")):
        labels = host.split(".")
        if labels[0] == "sqs" and len(labels) > 2:
            return None, labels[1]  # sqs.REGION.amazonaws.com
        if len(labels) > 2 and labels[1] == "queue":
            return None, labels[0]  # legacy REGION.queue.amazonaws.com
        return None, None
    return f"{parts.scheme}://{parts.netloc}", None


def make_sqs_client(
    queue_url: str,
    store: S3Storage | None = None,
    *,
    wait_time_s: int = MAX_WAIT_S,
    retry: bool = True,
) -> Any:
    """An SQS client for `queue_url` with the credentials (and region) of `store`, or of the
    standard AWS chain; its read timeout outlasts the long poll. `retry=False`: botocore makes
    one attempt per call (for callers that retry on their own, such as the notification
    outbox, where botocore's retry of a send that timed out after landing would duplicate it)."""
    endpoint_url, region = sqs_endpoint(queue_url)
    storage = store or S3Storage()
    session = storage.session()
    region = region or storage.region or session.region_name or "us-east-1"
    config = storage.client_config().merge(
        BotoConfig(read_timeout=max(storage.read_timeout_s, wait_time_s + 10))
    )
    if not retry:
        config = config.merge(BotoConfig(retries={"max_attempts": 1, "mode": "standard"}))
    return session.client("sqs", endpoint_url=endpoint_url, region_name=region, config=config)
