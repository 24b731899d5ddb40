"""API authentication and authorization, in one place for every `/v1` router.

Each request carries `Authorization: Bearer <key>` unless the service runs with --insecure.
The key's role is checked against `autoinfer.keys.required_role` (GET/HEAD → read, other
methods → submit, /v1/keys and /v1/secrets → admin): 401 for a missing, unknown or revoked key,
403 for a role that is too low.
"""

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
    """FastAPI dependency: 401 unless the request carries a live API key, 403 unless its role
    allows the request. The principal is left in `request.state.principal`."""
    service = request.app.state.service
    if service.insecure:
        request.state.principal = None
        return
    token = bearer_token(request)
    if token is None:
        raise AuthError("missing API key: send 'Authorization: Bearer <key>'")
    # The policy reads the matched route's template: unlike the URL path, it does not change
    # with a proxy's root path (or anything else a client can put in the URL).
    route = request.scope.get("route")
    policy_path = getattr(route, "path", None) or request.url.path
    request.state.principal = service.keys.authorize(
        token, request.method, policy_path, shown_path=request.url.path
    )


def constant_time_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
