"""The `limits:` section of autoinfer.yaml: how much any one request may cost the service.

Pure settings and the rules read from them (which body cap applies to a route); the ASGI
middleware that enforces them is `autoinfer.api.gate`, the follow-stream caps
`autoinfer.api.follow`, and the connection-level ones are handed to uvicorn by
`autoinfer.api.server`.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

KIB = 1024
MIB = 1024 * KIB
#: The webhook's own ceiling (1000 records of S3 JSON are ~2 MiB); `max_event_bytes` may lower it.
MAX_EVENT_BODY = 16 * MIB
#: The largest integer the stores hold (SQLite INTEGER, PostgreSQL BIGINT): ids, offsets and
#: cursors above it are refused with a 422 instead of failing in the database.
MAX_DB_INT = 2**63 - 1

_ADMIN_PREFIXES = ("/v1/keys", "/v1/secrets")


class LimitsConfig(BaseModel):
    """Request limits; every default holds for a service on the open network.

    Body caps are checked against `Content-Length` before any byte is read and counted while
    a chunked body arrives; a request over its cap is answered 413 naming the cap.
    """

    model_config = ConfigDict(extra="forbid")

    max_body_bytes: int = Field(1 * MIB, ge=1, le=64 * MIB)  # any route not named below
    max_job_bytes: int = Field(256 * KIB, ge=1, le=64 * MIB)  # POST /v1/jobs (a job spec)
    max_admin_bytes: int = Field(64 * KIB, ge=1, le=64 * MIB)  # /v1/keys, /v1/secrets
    max_event_bytes: int = Field(MAX_EVENT_BODY, ge=1, le=MAX_EVENT_BODY)  # POST /v1/events/s3
    # The whole body must arrive within this many seconds of the request's headers; a body
    # that stalls is answered 408 and its connection closed.
    body_timeout_s: float = Field(30.0, gt=0, le=3600)
    # A request line and headers must arrive within this many seconds of the connection (or
    # of the previous response), else the connection is closed (autoinfer.api.connections).
    header_timeout_s: float = Field(10.0, gt=0, le=3600)
    # uvicorn: an idle keep-alive connection is closed after this many seconds.
    keep_alive_s: int = Field(5, ge=1, le=3600)
    # uvicorn (h11): the request line and headers together may not exceed this.
    max_header_bytes: int = Field(64 * KIB, ge=4 * KIB, le=1 * MIB)
    # Open `GET /v1/jobs/{id}/logs?follow=true` streams: per API key, and in all; 429 past them.
    follow_streams_per_key: int = Field(8, ge=1, le=10_000)
    follow_streams_total: int = Field(64, ge=1, le=100_000)

    def body_cap(self, method: str, route_path: str) -> int:
        """The body cap of `method route_path` (the matched route's template, or the URL path
        when no route matches)."""
        path = route_path.rstrip("/") or "/"
        if method == "POST" and path == "/v1/jobs":
            return self.max_job_bytes
        if method == "POST" and path == "/v1/events/s3":
            return self.max_event_bytes
        if any(path == p or path.startswith(p + "/") for p in _ADMIN_PREFIXES):
            return self.max_admin_bytes
        return self.max_body_bytes


def describe_size(size: int) -> str:
    """`size` bytes as people write it: 256 KiB, 16 MiB, 1500 bytes."""
    for unit, name in ((MIB, "MiB"), (KIB, "KiB")):
        if size >= unit and size % unit == 0:
            return f"{size // unit} {name}"
    return f"{size} bytes"
