"""The `webhook` source: S3-format notifications POSTed to `/v1/events/s3`.

A sender proves itself with the source's token, either as `Authorization: Bearer <token>`
(what MinIO's webhook target sends) or by signing the body:

    X-AutoInfer-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(token, "<t>.<body>")>

The timestamp must be within `TOLERANCE_S` of the service's clock, so a captured request
cannot be replayed later. The HTTP side lives in `autoinfer.api.events`.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Mapping, Sequence

from autoinfer.errors import AuthError, ConfigError
from autoinfer.events.source import Source

SIGNATURE_HEADER = "X-AutoInfer-Signature"
TOLERANCE_S = 300
#: Bodies above this are refused before parsing (1000 records of S3 JSON are ~2 MiB).
MAX_BODY_BYTES = 16 * 1024 * 1024

SecretResolver = Callable[[str], str]


class WebhookSource(Source):
    """A passive source: the API authenticates requests with it and ingests under its name."""

    def __init__(self, name: str, token: str | None, store: str | None = None) -> None:
        self.name = name
        self.token_ref = token  # literal, or "secret:NAME" resolved at request time
        self.store = store

    def start(self) -> None:
        """Nothing to run: the HTTP API feeds this source."""

    def stop(self, timeout: float = 10.0) -> None:
        """Nothing to stop."""

    def token(self, resolve: SecretResolver | None) -> str | None:
        """The token in clear; ConfigError if it names a secret and nothing can resolve it."""
        if self.token_ref is None:
            return None
        if not self.token_ref.startswith("secret:"):
            return self.token_ref
        if resolve is None:
            raise ConfigError(f"webhook source {self.name}: cannot resolve {self.token_ref!r}")
        return resolve(self.token_ref)

    def accepts(
        self,
        headers: Mapping[str, str],
        body: bytes,
        resolve: SecretResolver | None = None,
        *,
        now: float | None = None,
    ) -> bool:
        """Whether the request carries this source's token or a valid signature with it.

        AuthError (rather than False) when a signature is present but stale or malformed,
        so the sender learns why.
        """
        token = self.token(resolve)
        if not token:
            return False
        signature = _header(headers, SIGNATURE_HEADER)
        if signature is not None:
            return verify_signature(signature, body, token, now=now, raise_on_stale=True)
        bearer = bearer_token(_header(headers, "Authorization"))
        return bearer is not None and hmac.compare_digest(bearer.encode(), token.encode())


def sign(token: str, body: bytes, timestamp: int | None = None) -> str:
    """The `X-AutoInfer-Signature` header value for `body` (what senders compute)."""
    moment = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(token.encode(), f"{moment}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={moment},v1={digest}"


def verify_signature(
    header: str,
    body: bytes,
    token: str,
    *,
    now: float | None = None,
    tolerance_s: float = TOLERANCE_S,
    raise_on_stale: bool = False,
) -> bool:
    """Whether `header` signs `body` with `token` (constant-time); several `v1=` may be given.

    A malformed header, or (with `raise_on_stale`) a timestamp outside the tolerance window,
    raises AuthError naming the problem.
    """
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        name, equals, value = part.strip().partition("=")
        if not equals or not value:
            raise AuthError(f"{SIGNATURE_HEADER}: malformed; expected 't=<unix time>,v1=<hex>'")
        fields.setdefault(name, []).append(value)
    stamps, signatures = fields.get("t", []), fields.get("v1", [])
    if len(stamps) != 1 or not _is_unix_time(stamps[0]) or not signatures:
        raise AuthError(f"{SIGNATURE_HEADER}: malformed; expected 't=<unix time>,v1=<hex>'")
    skew = abs((time.time() if now is None else now) - int(stamps[0]))
    if skew > tolerance_s:
        if raise_on_stale:
            raise AuthError(
                f"{SIGNATURE_HEADER}: timestamp is {int(skew)} s away from the service's clock "
                f"(tolerance {int(tolerance_s)} s); sign each request when sending it"
            )
        return False
    expected = sign(token, body, int(stamps[0])).partition(",v1=")[2]
    return any(hmac.compare_digest(expected.encode(), s.encode()) for s in signatures)


def authenticate(
    sources: Sequence[WebhookSource],
    headers: Mapping[str, str],
    body: bytes,
    *,
    resolve: SecretResolver | None = None,
    check_api_key: Callable[[str], bool] | None = None,
    insecure: bool = False,
) -> str:
    """The name of the webhook source the request authenticates as; AuthError otherwise.

    Configured tokens are tried first. The service's API key is accepted as well when no
    webhook source is configured or one has no token of its own (its events are then
    recorded under that source's name, or `webhook`); `insecure` then waits for no key.
    """
    for source in sources:
        if source.accepts(headers, body, resolve):
            return source.name
    keyless = [s for s in sources if s.token_ref is None]
    if sources and not keyless:
        if _header(headers, SIGNATURE_HEADER) is not None:
            raise AuthError(f"{SIGNATURE_HEADER}: the signature does not match the body")
        if _header(headers, "Authorization") is None:
            raise AuthError(
                "missing webhook credentials: send 'Authorization: Bearer <token>' or an "
                f"{SIGNATURE_HEADER} header"
            )
        raise AuthError("invalid webhook token")
    name = keyless[0].name if keyless else "webhook"
    if insecure:
        return name
    token = bearer_token(_header(headers, "Authorization"))
    if token is None:
        raise AuthError("missing API key: send 'Authorization: Bearer <key>'")
    if check_api_key is None or not check_api_key(token):
        raise AuthError("invalid API key")
    return name


def precheck(
    sources: Sequence[WebhookSource],
    headers: Mapping[str, str],
    *,
    resolve: SecretResolver | None = None,
    check_api_key: Callable[[str], bool] | None = None,
    insecure: bool = False,
) -> None:
    """AuthError when the request cannot authenticate whatever its body is: what can be
    checked before the body is read (everything but an HMAC signature's digest)."""
    signature = _header(headers, SIGNATURE_HEADER)
    if signature is None or all(source.token_ref is None for source in sources):
        # No credential that depends on the body: the full check, on an empty one.
        authenticate(
            sources, headers, b"", resolve=resolve, check_api_key=check_api_key, insecure=insecure
        )
        return
    # Malformed or stale: the AuthError the full check would raise; a mismatch waits for it.
    verify_signature(signature, b"", "", raise_on_stale=True)


def _is_unix_time(value: str) -> bool:
    """Whether `value` is a plausible unix time in seconds (ASCII digits, at most 12 of them:
    anything longer is refused before it is turned into a number)."""
    return value.isascii() and value.isdigit() and len(value) <= 12


def bearer_token(header: str | None) -> str | None:
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        value = headers.get(name.lower())
    return value
