"""The gate in front of the app: every request authenticated and bounded before it is read.

A pure ASGI middleware (no body is parsed by anything before it passes):

1. The route is matched first. A route that needs an API key (`require_key` among its
   dependencies) has the key checked here, before any body byte is read: 401/403 as the
   dependency would answer. The webhook (`POST /v1/events/s3`) has its credentials checked as
   far as they can be without the body (all but an HMAC signature's digest).
2. `Content-Length` is compared with the route's cap (`LimitsConfig.body_cap`): over it, 413
   naming the cap, and the connection is closed rather than read.
3. The body is then read here, counted as it arrives (chunked bodies included) and cut at the
   cap (413), within `body_timeout_s` of the request (408 when it stalls), and replayed to the
   app, which therefore never holds more than one capped body per request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from autoinfer.api.auth import AUTHORIZED, authorize, require_key
from autoinfer.api.errors import error_response
from autoinfer.api.limits import LimitsConfig, describe_size
from autoinfer.errors import AuthError, AutoInferError
from autoinfer.events.webhook import precheck

_BODYLESS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})
WEBHOOK_PATH = "/v1/events/s3"


class RequestGate:
    """ASGI middleware enforcing `LimitsConfig` and the API key ahead of the app."""

    def __init__(self, app: ASGIApp, *, fastapi_app: Any, limits: LimitsConfig) -> None:
        self.app = app
        self.fastapi_app = fastapi_app  # its router and `state.service`
        self.limits = limits
        self._needs_key: dict[int, bool] = {}
        self._routes: list[BaseRoute] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"].upper()
        route = self._route(scope)
        route_path = getattr(route, "path", None) or scope["path"]
        headers = _headers(scope)
        try:
            await self._authenticate(scope, route, route_path, method, headers)
        except AutoInferError as error:
            status = 401 if isinstance(error, AuthError) else error.status_code
            await self._refuse(scope, receive, send, status, error.code, str(error))
            return
        if (
            method in _BODYLESS
            and "content-length" not in headers
            and ("transfer-encoding" not in headers)
        ):
            await self.app(scope, receive, send)
            return
        cap = self.limits.body_cap(method, route_path)
        shown = f"{method} {route_path}"
        declared = headers.get("content-length")
        if declared is not None and not (declared.isascii() and declared.isdigit()):
            await self._refuse(
                scope, receive, send, 400, "invalid_request", "invalid Content-Length"
            )
            return
        if declared is not None and int(declared) > cap:
            await self._too_large(scope, receive, send, cap, shown)
            return
        outcome = await self._read_body(receive, cap)
        if outcome == "too_large":
            await self._too_large(scope, receive, send, cap, shown)
            return
        if outcome == "timeout":
            message = f"request body not received within {self.limits.body_timeout_s:g} s"
            await self._refuse(scope, receive, send, 408, "timeout", message)
            return
        if isinstance(outcome, _Disconnected):
            return
        assert isinstance(outcome, bytes)  # the strings are handled above
        await self.app(scope, _replay(outcome, receive), send)

    # --- steps ----------------------------------------------------------------------------

    def _route(self, scope: Scope) -> BaseRoute | None:
        """The route the app will run for this request, or None (404 and 405 are the app's)."""
        if self._routes is None:
            self._routes = list(_flatten(self.fastapi_app.router.routes))
        for route in self._routes:
            match, _ = route.matches(scope)
            if match == Match.FULL:
                return route
        return None

    def _route_needs_key(self, route: BaseRoute | None) -> bool:
        if route is None:
            return False
        known = self._needs_key.get(id(route))
        if known is None:
            dependant = getattr(route, "dependant", None)
            known = dependant is not None and _depends_on(dependant, require_key)
            self._needs_key[id(route)] = known
        return known

    async def _authenticate(
        self,
        scope: Scope,
        route: BaseRoute | None,
        route_path: str,
        method: str,
        headers: dict[str, str],
    ) -> None:
        service = self.fastapi_app.state.service
        if self._route_needs_key(route):
            principal = await run_in_threadpool(
                authorize,
                service,
                headers.get("authorization", ""),
                method,
                route_path,
                scope["path"],
            )
            scope.setdefault("state", {})["principal"] = principal
            scope[AUTHORIZED] = True
        elif method == "POST" and route_path == WEBHOOK_PATH:
            await run_in_threadpool(
                precheck,
                service.pipeline.webhook_sources,
                headers,
                resolve=getattr(service, "resolve_secret", None),
                check_api_key=service.check_api_key,
                insecure=service.insecure,
            )

    async def _read_body(self, receive: Receive, cap: int) -> bytes | str | _Disconnected:
        """The whole body; or "too_large" past `cap`, "timeout" past the deadline."""
        deadline = time.monotonic() + self.limits.body_timeout_s
        chunks: list[bytes] = []
        size = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return "timeout"
            try:
                message = await asyncio.wait_for(receive(), remaining)
            except TimeoutError:
                return "timeout"
            if message["type"] == "http.disconnect":
                return _Disconnected()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > cap:
                return "too_large"
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _too_large(
        self, scope: Scope, receive: Receive, send: Send, cap: int, shown: str
    ) -> None:
        message = f"request body over {describe_size(cap)} (limit for {shown})"
        await self._refuse(scope, receive, send, 413, "too_large", message)

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, status: int, code: str, message: str
    ) -> None:
        """Answer with the API's error JSON and close the connection: whatever is left of the
        body is never read."""
        redact = getattr(self.fastapi_app.state.service, "redact", None)
        response = error_response(status, code, redact(message) if redact else message)
        response.headers["connection"] = "close"
        await response(scope, receive, send)


class _Disconnected:
    """The client went away before its body was complete."""


def _headers(scope: Scope) -> dict[str, str]:
    """The request headers, lower-cased names, the first of any repeated one."""
    headers: dict[str, str] = {}
    for name, value in scope.get("headers", ()):
        headers.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
    return headers


def _flatten(routes: Iterable[BaseRoute]) -> Iterator[BaseRoute]:
    """The app's routes in matching order, those of included routers in their place (newer
    FastAPI keeps an included router as one route that delegates to it)."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _flatten(included.routes)
        else:
            yield route


def _depends_on(dependant: Any, call: Callable[..., Any]) -> bool:
    return any(d.call is call or _depends_on(d, call) for d in dependant.dependencies)


def _replay(body: bytes, receive: Receive) -> Callable[[], Awaitable[Message]]:
    """A `receive` that hands the app the body read already, then the client's later messages
    (a disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
