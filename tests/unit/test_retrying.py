"""Retrying storage calls through transient outages, and telling transient errors apart."""

from __future__ import annotations

import random
import threading
import time

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError, SSLError

from autoinfer.errors import ArchiveError, StorageError
from autoinfer.retrying import backoff_delay, jittered_delay, retry_transient
from autoinfer.storage.s3 import is_transient


class Flaky:
    """Fails with the given errors, in order, then returns "done"."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


def outage() -> StorageError:
    return StorageError("s3://b/k: cannot reach endpoint", transient=True)


def test_transient_errors_are_retried_until_the_call_succeeds() -> None:
    call = Flaky(outage(), outage(), outage())
    retries: list[tuple[int, float]] = []

    result = retry_transient(
        call,
        deadline=time.monotonic() + 60,
        base_s=0.001,
        on_retry=lambda error, wait, retry: retries.append((retry, wait)),
    )

    assert result == "done" and call.calls == 4
    assert [retry for retry, _ in retries] == [1, 2, 3]


def test_permanent_errors_are_raised_at_once() -> None:
    for error in (
        StorageError("s3://b/k: bucket 'b' does not exist (NoSuchBucket)"),
        ArchiveError("x"),
    ):
        call = Flaky(error)
        with pytest.raises(StorageError) as raised:
            retry_transient(call, deadline=time.monotonic() + 60, base_s=0.001)
        assert raised.value is error and call.calls == 1


def test_other_errors_are_not_retried() -> None:
    call = Flaky(ValueError("bug"))
    with pytest.raises(ValueError):
        retry_transient(call, deadline=time.monotonic() + 60, base_s=0.001)
    assert call.calls == 1


def test_a_transient_error_is_raised_when_waiting_would_pass_the_deadline() -> None:
    error = outage()
    call = Flaky(error, outage())

    with pytest.raises(StorageError) as raised:
        retry_transient(call, deadline=time.monotonic() + 0.001, base_s=10)

    assert raised.value is error and call.calls == 1


def test_cancelling_ends_the_wait_with_the_error() -> None:
    cancelled = threading.Event()
    cancelled.set()
    error = outage()

    with pytest.raises(StorageError) as raised:
        retry_transient(Flaky(error), deadline=time.monotonic() + 60, cancelled=cancelled)

    assert raised.value is error


def test_backoff_doubles_up_to_its_cap_and_waits_are_jittered_below_it() -> None:
    assert [backoff_delay(n, base_s=0.5, max_s=30) for n in range(1, 9)] == [
        0.5,
        1,
        2,
        4,
        8,
        16,
        30,
        30,
    ]
    waits: list[float] = []
    retry_transient(
        Flaky(*(outage() for _ in range(6))),
        deadline=time.monotonic() + 60,
        base_s=0.001,
        rng=random.Random(3),
        on_retry=lambda error, wait, retry: waits.append(wait / backoff_delay(retry, base_s=0.001)),
    )
    assert all(0.5 <= share <= 1.0 for share in waits) and len(set(waits)) == 6


def client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "PutObject",
    )


@pytest.mark.parametrize(
    "error",
    [
        EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
        ReadTimeoutError(endpoint_url="http://127.0.0.1:1"),
        client_error("SlowDown", 503),
        client_error("InternalError", 500),
        client_error("Whatever", 502),
        client_error("RequestTimeout", 400),
    ],
)
def test_unreachable_endpoints_throttling_and_5xx_are_transient(error: Exception) -> None:
    assert is_transient(error)


@pytest.mark.parametrize(
    "error",
    [
        client_error("NoSuchBucket", 404),
        client_error("AccessDenied", 403),
        client_error("InvalidAccessKeyId", 403),
        SSLError(endpoint_url="https://x", error="certificate verify failed"),
        ValueError("not an AWS error"),
    ],
)
def test_missing_buckets_denials_and_bad_certificates_are_permanent(error: Exception) -> None:
    assert not is_transient(error)


def test_jittered_delay_is_drawn_from_the_upper_half_of_the_capped_backoff() -> None:
    rng = random.Random(7)
    for retry in range(1, 12):
        longest = min(30.0, 0.5 * 2 ** (retry - 1))
        waits = [jittered_delay(retry, base_s=0.5, max_s=30.0, rng=rng) for _ in range(50)]
        assert all(longest / 2 <= wait <= longest for wait in waits)
    assert jittered_delay(10_000, base_s=1.0, max_s=30.0, rng=rng) <= 30.0
