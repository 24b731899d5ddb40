"""API authentication: `Authorization: Bearer <key>` unless the service runs with --insecure."""

from __future__ import annotations

import hmac

from fastapi import Request

from autoinfer.errors import AuthError


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def require_key(request: Request) -> None:
    """FastAPI dependency: refuse the request with 401 unless it carries a valid API key."""
    service = request.app.state.service
    if service.insecure:
        return
    token = bearer_token(request)
    if token is None:
        raise AuthError("missing API key: send 'Authorization: Bearer <key>'")
    if not service.check_api_key(token):
        raise AuthError("invalid API key")


def constant_time_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
