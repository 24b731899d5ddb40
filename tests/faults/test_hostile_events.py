"""Hostile webhook deliveries: each answered precisely, and the service keeps serving."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.support.service_harness import (
    ServiceProcess,
    classify_trigger,
    make_object,
    notification,
    record_for,
)


def record(
    bucket: str = "data", key: str = "incoming/x.zip", event: str = "ObjectCreated:Put"
) -> dict[str, Any]:
    return record_for(bucket, key, b"not really a zip", event_name=event)


def error_of(response: Any) -> tuple[int, str, str]:
    error = response.json()["error"]
    return response.status_code, error["code"], error["message"]


@pytest.fixture
def service(serve: Callable[..., ServiceProcess]) -> ServiceProcess:
    return serve(triggers=[classify_trigger()])


@pytest.mark.slow
def test_malformed_bodies_are_refused_with_the_first_thing_wrong(service: ServiceProcess) -> None:
    without_time = record()
    del without_time["eventTime"]
    without_key = record()
    del without_key["s3"]["object"]["key"]
    cases = {
        b"this is not { json": "body is not JSON: ",
        b"": "body is empty",
        b"[1, 2]": "body must be a JSON object, got list",
        b"{}": "Records: missing (not an S3 event notification)",
        b'{"Records": {"a": 1}}': "Records must be a list",
        b'{"Records": [42]}': "Records[0]: must be an object, got int",
        notification(without_time): "Records[0].eventTime: missing",
        notification(without_key): "Records[0].s3.object.key: missing",
        notification(*[record(key=f"incoming/{i}.zip") for i in range(10_000)]): (
            "Records: 10000 records in one notification; at most 1000 allowed"
        ),
        notification(record(key="incoming/" + "k" * 1016)): (
            "Records[0].s3.object.key: 1025 bytes long; S3 keys are at most 1024 bytes"
        ),
    }
    for body, message in cases.items():
        status, code, text = error_of(service.post_event(body))
        assert (status, code) == (400, "invalid_event"), text
        assert text.startswith(message), text

    rejected = service.events(outcome="rejected")
    assert len(rejected) == len(cases)
    assert service.count_jobs() == 0


@pytest.mark.slow
def test_deliveries_without_the_token_are_refused(service: ServiceProcess) -> None:
    body = notification(record())
    assert error_of(service.post_event(body, token="wrong")) == (
        401,
        "unauthorized",
        "invalid webhook token",
    )
    assert service.count_events() == 0


@pytest.mark.slow
def test_events_no_trigger_wants_are_recorded_as_ignored_with_the_reason(
    service: ServiceProcess,
) -> None:
    longest_key = "other/" + "k" * (1024 - len("other/"))
    cases = [
        (record(bucket="elsewhere"), "no trigger for bucket 'elsewhere'"),
        (
            record(event="ObjectRestore:Completed"),
            "(ObjectRestore:Completed); triggers on that bucket: classify",
        ),
        (record(event="Nonsense:Event"), "(Nonsense:Event); triggers on that bucket: classify"),
        (record(key=longest_key), f"no trigger for bucket 'data' matches key '{longest_key}'"),
    ]
    for body, reason in cases:
        response = service.post_event(notification(body))
        assert response.status_code == 200, response.text
        [outcome] = response.json()["events"]
        assert outcome["outcome"] == "ignored"
        assert reason in outcome["reason"], outcome["reason"]
    assert service.count_events("ignored") == len(cases)
    assert service.count_jobs() == 0


@pytest.mark.slow
def test_a_normal_event_after_hostile_ones_still_produces_its_result(
    service: ServiceProcess,
) -> None:
    for body in (b"\xff\xfe garbage", json.dumps({"Records": [None] * 10_000}).encode(), b"{"):
        assert service.post_event(body).status_code == 400
    normal = make_object(service.workdir / "buckets", "data", "incoming/normal.zip", 3)

    response = service.post_event(notification(normal))

    assert response.status_code == 200
    service.wait_for(lambda: service.count_jobs("finished") == 1, 120, "the normal job")
    assert (service.workdir / "buckets" / "data" / "processed" / "normal.zip").is_file()
