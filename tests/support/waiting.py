"""Waiting for something another thread or process does: poll until it holds, or fail the test.

A test never asserts on wall-clock time; the timeout only bounds how long a broken test hangs
before it fails, naming what it waited for.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")

#: How long a wait lasts before the test fails (generous: the machine may be loaded).
DEFAULT_TIMEOUT_S = 60.0


def wait_until(
    check: Callable[[], T],
    what: str = "",
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
    interval: float = 0.05,
) -> T:
    """Call `check` until it returns something truthy and return that; fail the test, naming
    `what`, if it has not within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what or 'the condition'}")
        time.sleep(interval)
