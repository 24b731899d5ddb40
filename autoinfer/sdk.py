"""The Python client. Its names and argument shapes follow the trainML SDK, so a Lambda handler
written for trainML works after changing only its import and constructor:

    from autoinfer import AutoInfer
    client = AutoInfer(url="http://127.0.0.1:8000", key="...")
    job = await client.jobs.create(name=..., type="inference", gpu_type=..., gpu_count=1,
                                   disk_size=10, workers=[...], data=dict(...), model=dict(...))
    await job.wait_for("finished")

`SyncAutoInfer` offers the same calls without `await`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import os
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any
from urllib.parse import quote

import httpx

from autoinfer.errors import (
    AuthError,
    AutoInferError,
    Conflict,
    Forbidden,
    JobFailed,
    NotFound,
    SpecError,
)

DEFAULT_URL = "http://127.0.0.1:8000"
TERMINAL = ("finished", "failed", "stopped")

#: Set by the trigger dispatcher around a handler call (see `idempotency_scope`): jobs created
#: inside it get an `Idempotency-Key`, so a redelivered event can never create a second job.
idempotency_key: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "autoinfer_idempotency_key", default=None
)


class _CreateCounter:
    """How many jobs the SDK has created in one idempotency scope. Shared, not copied, by the
    copies of the context that async tasks and the synchronous wrapper's loop run in."""

    def __init__(self) -> None:
        self._count = 0
        self._lock = threading.Lock()

    def next(self) -> int:
        with self._lock:
            self._count += 1
            return self._count


_creates: contextvars.ContextVar[_CreateCounter | None] = contextvars.ContextVar(
    "autoinfer_idempotency_creates", default=None
)


class APIError(AutoInferError):
    """The service answered with an error: `.status`, `.code` and the service's message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{message} (HTTP {status}, {code})")
        self.status, self.code, self.message = status, code, message


_ERRORS = {401: AuthError, 403: Forbidden, 404: NotFound, 409: Conflict, 422: SpecError}


class AutoInfer:
    """Async client of one autoinfer service. Defaults come from AUTOINFER_URL / AUTOINFER_KEY."""

    def __init__(
        self, url: str | None = None, key: str | None = None, *, timeout: float = 30.0
    ) -> None:
        self.url = (url or os.environ.get("AUTOINFER_URL") or DEFAULT_URL).rstrip("/")
        self.key = key if key is not None else os.environ.get("AUTOINFER_KEY")
        self.timeout = timeout
        self.jobs = Jobs(self)
        self.events = Events(self)
        self.triggers = Triggers(self)
        self.keys = Keys(self)
        self.secrets = Secrets(self)
        self.notifications = Notifications(self)

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"} if self.key else {}

    async def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = {**self._headers(), **kwargs.pop("headers", {})}
        async with httpx.AsyncClient(base_url=self.url, timeout=self.timeout) as http:
            try:
                response = await http.request(method, path, headers=headers, **kwargs)
            except httpx.TransportError as error:
                raise AutoInferError(
                    f"{self.url}: cannot reach the autoinfer service: {error}"
                ) from None
        return _decode(response)

    async def _stream_lines(self, path: str, params: dict[str, Any]) -> AsyncIterator[dict]:
        async with (
            httpx.AsyncClient(base_url=self.url, timeout=None) as http,
            http.stream("GET", path, params=params, headers=self._headers()) as response,
        ):
            if response.status_code >= 400:
                await response.aread()
                _decode(response)
            async for line in response.aiter_lines():
                if line.strip():
                    yield json.loads(line)

    async def health(self) -> dict:
        return await self._request("GET", "/healthz")


def _decode(response: httpx.Response) -> Any:
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code >= 400:
        error = (body or {}).get("error", {}) if isinstance(body, dict) else {}
        message = error.get("message") or response.text[:200] or response.reason_phrase
        exception = _ERRORS.get(response.status_code)
        if exception is not None:
            raise exception(message)
        raise APIError(response.status_code, error.get("code", "http_error"), message)
    return body


class Job:
    """A job as the service last reported it; `refresh()` reloads it."""

    def __init__(self, client: AutoInfer, data: dict[str, Any]) -> None:
        self._client = client
        self._data = data

    @property
    def id(self) -> str:
        return self._data["id"]

    @property
    def name(self) -> str:
        return self._data["name"]

    @property
    def status(self) -> str:
        return self._data["status"]

    @property
    def reason(self) -> str | None:
        return self._data.get("reason")

    @property
    def progress(self) -> dict | None:
        return self._data.get("progress")

    @property
    def output_location(self) -> str | None:
        return self._data.get("output_location")

    @property
    def dict(self) -> dict[str, Any]:
        return dict(self._data)

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __repr__(self) -> str:
        return f"Job(id={self.id!r}, name={self.name!r}, status={self.status!r})"

    async def refresh(self) -> Job:
        self._data = await self._client._request("GET", f"/v1/jobs/{self.id}")
        return self

    async def stop(self) -> Job:
        self._data = await self._client._request("POST", f"/v1/jobs/{self.id}/stop")
        return self

    async def retry(self) -> Job:
        self._data = await self._client._request("POST", f"/v1/jobs/{self.id}/retry")
        return self

    async def wait_for(
        self, status: str, timeout: float | None = None, *, interval: float = 0.5
    ) -> Job:
        """Wait until the job reaches `status`; JobFailed if it ends in another terminal status."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            await self.refresh()
            if self.status == status:
                return self
            if self.status in TERMINAL:
                raise JobFailed(
                    f"job {self.name} ({self.id}) ended '{self.status}': {self.reason or 'no reason'}"
                )
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(
                    f"job {self.name} ({self.id}) still '{self.status}' after {timeout} s"
                )
            await asyncio.sleep(interval)

    async def logs(self, *, after: int = 0) -> list[dict]:
        page = await self._client._request(
            "GET", f"/v1/jobs/{self.id}/logs", params={"after": after}
        )
        return page["lines"]

    async def items(
        self, *, status: str | None = None, limit: int = 100, offset: int = 0
    ) -> dict:
        """A page of the job's per-item results: `{"items": [...], "total": N}`; `status`
        "ok" or "error" keeps only those."""
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if status:
            params["status"] = status
        return await self._client._request("GET", f"/v1/jobs/{self.id}/items", params=params)

    async def follow_logs(self, *, after: int = 0) -> AsyncIterator[dict]:
        """Log lines as they are written; the last item is `{"status": ..., "reason": ...}`."""
        params = {"follow": "true", "after": after}
        async for item in self._client._stream_lines(f"/v1/jobs/{self.id}/logs", params):
            yield item


class Jobs:
    """`client.jobs`: create, get and list jobs."""

    def __init__(self, client: AutoInfer) -> None:
        self._client = client

    async def create(
        self,
        name: str,
        type: str = "inference",
        *,
        gpu_type: str | None = None,
        gpu_types: list[str] | None = None,
        gpu_count: int = 0,
        cpu_count: int | None = None,
        disk_size: int = 10,
        max_price: float | None = None,
        preemptible: bool | None = None,
        workers: list[str] | None = None,
        data: dict[str, Any] | None = None,
        model: dict[str, Any] | None = None,
        environment: dict[str, Any] | None = None,
        timeout_s: int | None = None,
        idempotency_key: str | None = None,
        **fields: Any,
    ) -> Job:
        """Create a job; arguments as trainML's `jobs.create`. Everything given is sent: the
        service decides, and answers a field it does not support with a 422 naming it."""
        resources: dict[str, Any] = {
            "cpu_count": cpu_count or max(1, gpu_count) or 1,
            "gpu_count": gpu_count,
            "gpu_type": gpu_type,
            "disk_size": disk_size,
        }
        if gpu_types is not None:
            resources["gpu_types"] = [gpu_types] if isinstance(gpu_types, str) else list(gpu_types)
        if max_price is not None:
            resources["max_price"] = max_price
        if preemptible is not None:
            resources["preemptible"] = preemptible
        spec: dict[str, Any] = {
            **fields,
            "name": name,
            "type": type,
            "resources": resources,
            "workers": list(workers or []),
            "data": dict(data or {}),
        }
        if model:
            spec["model"] = dict(model)
        if environment:
            spec["environment"] = dict(environment)
        if timeout_s is not None:
            spec["timeout_s"] = timeout_s
        key = idempotency_key or next_idempotency_key()
        headers = {"Idempotency-Key": key} if key else {}
        created = await self._client._request("POST", "/v1/jobs", json=spec, headers=headers)
        return Job(self._client, created)

    async def create_from_spec(
        self, spec: dict[str, Any], *, idempotency_key: str | None = None
    ) -> Job:
        """Create a job from a whole job spec (the service's JSON shape)."""
        key = idempotency_key or next_idempotency_key()
        headers = {"Idempotency-Key": key} if key else {}
        return Job(
            self._client,
            await self._client._request("POST", "/v1/jobs", json=spec, headers=headers),
        )

    async def get(self, id: str) -> Job:
        return Job(self._client, await self._client._request("GET", f"/v1/jobs/{id}"))

    async def list(
        self,
        *,
        status: str | None = None,
        name: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Job]:
        """Jobs newest first, optionally only those in `status` or named `name`."""
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if status:
            params["status"] = status
        if name:
            params["name"] = name
        page = await self._client._request("GET", "/v1/jobs", params=params)
        return [Job(self._client, item) for item in page["jobs"]]


class Events:
    def __init__(self, client: AutoInfer) -> None:
        self._client = client

    async def list(
        self, *, limit: int = 50, offset: int = 0, outcome: str | None = None
    ) -> list[dict]:
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if outcome:
            params["outcome"] = outcome
        return (await self._client._request("GET", "/v1/events", params=params))["events"]


class Triggers:
    def __init__(self, client: AutoInfer) -> None:
        self._client = client

    async def list(self) -> list[dict]:
        return (await self._client._request("GET", "/v1/triggers"))["triggers"]

    async def redrive(self, name: str) -> dict:
        """Re-queue the trigger's dead letters (its failed jobs); returns
        `{"trigger", "requeued", "job_ids"}`."""
        return await self._client._request("POST", f"/v1/triggers/{quote(name, safe='')}/redrive")


class Notifications:
    """`client.notifications`: completion notifications and their delivery."""

    def __init__(self, client: AutoInfer) -> None:
        self._client = client

    async def list(
        self,
        *,
        status: str | None = None,
        job_id: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[dict]:
        """Newest first; `status` pending, delivered or failed."""
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if status:
            params["status"] = status
        if job_id:
            params["job_id"] = job_id
        return (await self._client._request("GET", "/v1/notifications", params=params))[
            "notifications"
        ]

    async def get(self, id: int) -> dict:
        return await self._client._request("GET", f"/v1/notifications/{int(id)}")

    async def redeliver(self, id: int) -> dict:
        """Send it again now, with the same `webhook-id`."""
        return await self._client._request("POST", f"/v1/notifications/{int(id)}/redeliver")


class Keys:
    """`client.keys` (admin keys only): create, list and revoke API keys."""

    def __init__(self, client: AutoInfer) -> None:
        self._client = client

    async def create(self, name: str, role: str = "read") -> dict:
        """A new key; the returned `key` field is the only time the key is ever shown."""
        return await self._client._request("POST", "/v1/keys", json={"name": name, "role": role})

    async def list(self) -> list[dict]:
        """Every key with its role and times (revoked ones included); never the keys."""
        return (await self._client._request("GET", "/v1/keys"))["keys"]

    async def revoke(self, key: str) -> dict:
        """Revoke the key with this id, or the live key with this name."""
        return await self._client._request("DELETE", f"/v1/keys/{quote(key, safe='')}")


class Secrets:
    """`client.secrets` (admin keys only): set, list and remove encrypted secrets."""

    def __init__(self, client: AutoInfer) -> None:
        self._client = client

    async def set(self, name: str, value: str) -> dict:
        """Store or replace secret `name`; returns its name and times, never the value."""
        path = f"/v1/secrets/{quote(name, safe='')}"
        return await self._client._request("PUT", path, json={"value": value})

    async def list(self) -> list[dict]:
        """Secret names with their times."""
        return (await self._client._request("GET", "/v1/secrets"))["secrets"]

    async def remove(self, name: str) -> None:
        await self._client._request("DELETE", f"/v1/secrets/{quote(name, safe='')}")


@contextlib.contextmanager
def idempotency_scope(key: str) -> Iterator[None]:
    """Within it, the jobs created through the SDK carry `key` (the first), then `key-2`,
    `key-3`, ...: code that runs again in a new scope with the same key (a redelivered event's
    handler) sends the same keys in the same order, so it creates no new job, while each of
    several jobs created in one run is a job of its own."""
    tokens = (idempotency_key.set(key), _creates.set(_CreateCounter()))
    try:
        yield
    finally:
        _creates.reset(tokens[1])
        idempotency_key.reset(tokens[0])


def next_idempotency_key() -> str | None:
    """The `Idempotency-Key` for the next job created in this context: None outside a scope;
    the plain key if it was set without `idempotency_scope` (no counting)."""
    key = idempotency_key.get()
    counter = _creates.get()
    if key is None or counter is None:
        return key
    n = counter.next()
    return key if n == 1 else f"{key}-{n}"


# --- the synchronous wrapper ------------------------------------------------------------


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
