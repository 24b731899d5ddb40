"""The synchronous wrapper: `SyncAutoInfer` offers `AutoInfer`'s calls without `await`, run on
one private event loop shared by every synchronous client."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from autoinfer.sdk.client import AutoInfer
from autoinfer.sdk.resources import Events, Job, Jobs, Keys, Notifications, Secrets, Triggers


class _Loop:
    """One private event loop in a daemon thread, shared by every synchronous client."""

    _instance: _Loop | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, name="autoinfer-sdk", daemon=True).start()

    @classmethod
    def get(cls) -> _Loop:
        with cls._lock:
            if cls._instance is None:
                cls._instance = _Loop()
            return cls._instance

    def run(self, make: Callable[[], Awaitable[Any]]) -> Any:
        context = contextvars.copy_context()  # keeps the caller's idempotency key
        future: Any = asyncio.run_coroutine_threadsafe(_in_context(make, context), self.loop)
        return future.result()


async def _in_context(make: Callable[[], Awaitable[Any]], context: contextvars.Context) -> Any:
    task = asyncio.get_running_loop().create_task(_await(make), context=context)
    return await task


async def _await(make: Callable[[], Awaitable[Any]]) -> Any:
    return await make()


class _Blocking:
    """Wraps an async SDK object: coroutine methods become blocking calls, results are wrapped."""

    def __init__(self, target: Any) -> None:
        self._target = target

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if isinstance(value, (Jobs, Events, Triggers, Keys, Secrets, Notifications)):
            return _Blocking(value)
        if not callable(value) or not asyncio.iscoroutinefunction(value):
            return value

        def call(*args: Any, **kwargs: Any) -> Any:
            return _wrap(_Loop.get().run(lambda: value(*args, **kwargs)))

        return call

    def __repr__(self) -> str:
        return repr(self._target)


def _wrap(value: Any) -> Any:
    if isinstance(value, Job):
        return _Blocking(value)
    if isinstance(value, list):
        return [_wrap(item) for item in value]
    return value


class SyncAutoInfer(_Blocking):
    """`AutoInfer` without `await`: `SyncAutoInfer(url, key).jobs.create(...).wait_for("finished")`."""

    def __init__(
        self, url: str | None = None, key: str | None = None, *, timeout: float = 30.0
    ) -> None:
        super().__init__(AutoInfer(url, key, timeout=timeout))
