"""API authentication and authorization, in one place for every `/v1` router.

Each request carries `Authorization: Bearer <key>` unless the service runs with --insecure.
The key's role is checked against `autoinfer.keys.required_role` (GET/HEAD → read, other
methods → submit, /v1/keys and /v1/secrets → admin): 401 for a missing, unknown or revoked key,
403 for a role that is too low.
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from fastapi import Request

from autoinfer.errors import AuthError
from autoinfer.keys import Principal

if TYPE_CHECKING:
    from autoinfer.service import AutoInferService

#: Set in the ASGI scope by `autoinfer.api.gate` once it has checked the request's key, so
#: the dependency below does not check it a second time.
AUTHORIZED = "autoinfer.authorized"


def bearer_token(request: Request) -> str | None:
    return token_of(request.headers.get("authorization", ""))


def token_of(header: str) -> str | None:
    """The key of an `Authorization: Bearer <key>` header value, or None."""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def authorize(
    service: AutoInferService, authorization: str, method: str, policy_path: str, shown_path: str
) -> Principal | None:
    """The one access check of the API: the principal of the request's key (None when the
    service is insecure); AuthError (401) or Forbidden (403) otherwise.

    The policy reads `policy_path`, the matched route's template: unlike the URL path, it does
    not change with a proxy's root path (or anything else a client can put in the URL).
    """
    if service.insecure:
        return None
    token = token_of(authorization)
    if token is None:
        raise AuthError("missing API key: send 'Authorization: Bearer <key>'")
    return service.keys.authorize(token, method, policy_path, shown_path=shown_path)


def require_key(request: Request) -> None:
    """FastAPI dependency: 401 unless the request carries a live API key, 403 unless its role
    allows the request. The principal is left in `request.state.principal`."""
    if request.scope.get(AUTHORIZED):
        return  # the gate checked it before the body was read
    route = request.scope.get("route")
    request.state.principal = authorize(
        request.app.state.service,
        request.headers.get("authorization", ""),
        request.method,
        getattr(route, "path", None) or request.url.path,
        request.url.path,
    )


def constant_time_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
