"""The async client: one service's URL and key, its requests, and the service's errors as
exceptions."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from typing import Any

import httpx

from autoinfer.errors import (
    AuthError,
    AutoInferError,
    Conflict,
    Forbidden,
    NotFound,
    SpecError,
)
from autoinfer.sdk.resources import Events, Jobs, Keys, Notifications, Secrets, Triggers

DEFAULT_URL = "http://127.0.0.1:8000"


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
