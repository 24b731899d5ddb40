"""Retrying a storage call through a transient outage: exponential backoff with jitter, up to a
deadline.

Only a `StorageError` marked `transient` (the store unreachable, timing out, throttling or
answering 5xx) is retried; any other error is raised at once, as is the last transient one
when the next wait would pass the deadline or `cancelled` is set while waiting. The call must
be idempotent: it may have taken effect before the error reached us.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from autoinfer.errors import StorageError

T = TypeVar("T")

#: The first wait; each further wait doubles, up to MAX_DELAY_S.
BASE_DELAY_S = 0.5
MAX_DELAY_S = 30.0

OnRetry = Callable[[StorageError, float, int], None]


def backoff_delay(retry: int, *, base_s: float = BASE_DELAY_S, max_s: float = MAX_DELAY_S) -> float:
    """The longest wait before retry number `retry` (1, 2, ...): `base_s * 2**(retry-1)`, capped."""
    return min(max_s, base_s * 2 ** min(retry - 1, 62))


def jittered_delay(
    retry: int,
    *,
    base_s: float = BASE_DELAY_S,
    max_s: float = MAX_DELAY_S,
    rng: random.Random | None = None,
) -> float:
    """The wait before retry number `retry` (1, 2, ...): drawn from [d/2, d] with d the
    `backoff_delay`, so that many callers failing together do not retry in lockstep. The one
    retry policy of the project: jobs' attempts, uploads, sources and notifications use it."""
    longest = backoff_delay(retry, base_s=base_s, max_s=max_s)
    return (rng or random).uniform(longest / 2, longest)


def retry_transient(
    call: Callable[[], T],
    *,
    deadline: float,
    cancelled: threading.Event | None = None,
    on_retry: OnRetry | None = None,
    base_s: float = BASE_DELAY_S,
    max_s: float = MAX_DELAY_S,
    rng: random.Random | None = None,
) -> T:
    """`call()`, retried on transient StorageErrors until it succeeds or `deadline` (a
    `time.monotonic()` value) would pass; returns its result.

    Each wait is a `jittered_delay`, so that many jobs hitting the same outage do not retry
    in lockstep. `on_retry(error, wait_s, retry)` is called
    before each wait (to log it).
    """
    retry = 0
    while True:
        try:
            return call()
        except StorageError as error:
            if not error.transient:
                raise
            retry += 1
            wait = jittered_delay(retry, base_s=base_s, max_s=max_s, rng=rng)
            if time.monotonic() + wait > deadline:
                raise
            if on_retry is not None:
                on_retry(error, wait, retry)
            if cancelled is not None:
                if cancelled.wait(wait):
                    raise
            else:
                time.sleep(wait)
