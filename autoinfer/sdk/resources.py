"""The client's resources: `client.jobs`, `.events`, `.triggers`, `.notifications`, `.keys`,
`.secrets`, and `Job`, a job as the service last reported it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from autoinfer.errors import (
    JobFailed,
)
from autoinfer.sdk.idempotency import next_idempotency_key

if TYPE_CHECKING:
    from autoinfer.sdk.client import AutoInfer

#: A JSON object as the API returns it (`Job` has a `dict` method, so its annotations use this).
JSONObject = dict[str, Any]


TERMINAL = ("finished", "failed", "stopped")


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

    async def logs(self, *, after: int = 0) -> list[JSONObject]:
        page = await self._client._request(
            "GET", f"/v1/jobs/{self.id}/logs", params={"after": after}
        )
        return page["lines"]

    async def items(
        self, *, status: str | None = None, limit: int = 100, offset: int = 0
    ) -> JSONObject:
        """A page of the job's per-item results: `{"items": [...], "total": N}`; `status`
        "ok" or "error" keeps only those."""
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if status:
            params["status"] = status
        return await self._client._request("GET", f"/v1/jobs/{self.id}/items", params=params)

    async def follow_logs(self, *, after: int = 0) -> AsyncIterator[JSONObject]:
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
