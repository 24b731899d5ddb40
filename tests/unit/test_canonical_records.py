"""Handlers get AWS-canonical records: the key re-encoded as AWS encodes it, whatever the store
sent; the original record on `context.original_record`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from autoinfer.config import TriggerConfig
from autoinfer.events.model import aws_key_encoding, canonical_record, parse_notification
from autoinfer.triggers import LambdaContext, Trigger


def record(key: str, **extra: Any) -> dict[str, Any]:
    return {
        "eventVersion": "2.0",
        "eventSource": "minio:s3",
        "eventTime": "2026-11-24T10:00:00Z",
        "eventName": "s3:ObjectCreated:Put",
        "s3": {"bucket": {"name": "data"}, "object": {"key": key, "size": 3, **extra}},
    }


@pytest.mark.parametrize(
    ("key", "aws"),
    [
        ("incoming/images.zip", "incoming/images.zip"),
        ("incoming/red flower.jpg", "incoming/red+flower.jpg"),  # AWS's documented example
        ("incoming/dt=2018-05-04/_SUCCESS", "incoming/dt%3D2018-05-04/_SUCCESS"),
        ("logs/10:47:07.log", "logs/10%3A47%3A07.log"),
        ("c++/a+b.zip", "c%2B%2B/a%2Bb.zip"),
        ("me@x/(1) copy!.zip", "me%40x/%281%29+copy%21.zip"),
        ("it's/~a*b.zip", "it%27s/%7Ea*b.zip"),
        ("été/ü.zip", "%C3%A9t%C3%A9/%C3%BC.zip"),
        ("a%2Fb.zip", "a%252Fb.zip"),  # a literal percent sign in the key
    ],
)
def test_keys_are_encoded_as_aws_writes_them_in_notifications(key: str, aws: str) -> None:
    assert aws_key_encoding(key) == aws


@pytest.mark.parametrize(
    "sent",
    [
        "incoming%2Fmy+photos+%281%29.zip",
        "incoming/my+photos+%281%29.zip",
        "incoming%2Fmy%20photos%20(1).zip",
    ],
)
def test_every_store_spelling_of_one_key_becomes_the_same_aws_record(sent: str) -> None:
    [event] = parse_notification({"Records": [record(sent, eTag="abc")]}).events
    canonical = canonical_record(event)
    assert canonical["s3"]["object"]["key"] == "incoming/my+photos+%281%29.zip"
    assert canonical["s3"]["object"]["eTag"] == "abc"  # the rest of the record is kept
    assert event.raw["s3"]["object"]["key"] == sent  # the original is not changed


def test_the_handler_gets_the_canonical_record_and_the_original_on_its_context(
    tmp_path: Path,
) -> None:
    (tmp_path / "capture.py").write_text(
        "seen = []\n"
        "def handler(event, context):\n"
        "    seen.append((event, context.original_record))\n"
    )
    trigger = Trigger(
        TriggerConfig(name="t", bucket="data", handler="capture.py:handler"), base_dir=tmp_path
    )
    [event] = parse_notification({"Records": [record("incoming%2Fimages.zip")]}).events
    trigger.call_handler(event, LambdaContext(function_name="t", aws_request_id="1"))
    [(notification, original)] = trigger.handler.__globals__["seen"]  # type: ignore[union-attr]
    assert notification["Records"][0]["s3"]["object"]["key"] == "incoming/images.zip"
    assert original["s3"]["object"]["key"] == "incoming%2Fimages.zip"


def test_a_handler_that_takes_only_the_event_is_called_with_it(tmp_path: Path) -> None:
    (tmp_path / "one_argument.py").write_text(
        "keys = []\n"
        "def lambda_handler(event):\n"
        "    keys.append(event['Records'][0]['s3']['object']['key'])\n"
    )
    trigger = Trigger(
        TriggerConfig(name="t", bucket="data", handler="one_argument.py:lambda_handler"),
        base_dir=tmp_path,
    )
    [event] = parse_notification({"Records": [record("incoming/x.zip")]}).events
    trigger.call_handler(event, LambdaContext(function_name="t", aws_request_id="1"))
    assert trigger.handler.__globals__["keys"] == ["incoming/x.zip"]  # type: ignore[union-attr]
