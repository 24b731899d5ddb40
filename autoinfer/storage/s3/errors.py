"""S3 and SQS failures in words: one line saying what went wrong and what to check
(`describe_error`), whether retrying may help (`is_transient`), and a count of failed
requests per store and code for the metrics. Never includes credentials.
"""

from __future__ import annotations

import threading
from collections import Counter

from boto3.exceptions import Boto3Error
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    PartialCredentialsError,
    ProfileNotFound,
    ProxyConnectionError,
    ReadTimeoutError,
    SSLError,
)
from s3transfer.exceptions import RetriesExceededError as TransferRetriesExceeded

from autoinfer.text import one_line

#: What boto3, botocore and s3transfer raise; each becomes a StorageError.
AWS_ERRORS: tuple[type[Exception], ...] = (
    BotoCoreError,
    ClientError,
    Boto3Error,
    TransferRetriesExceeded,
)

#: Codes that say the object is not there.
NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_DENIED = frozenset({"AccessDenied", "403", "Forbidden", "AllAccessDisabled"})
_BAD_TOKEN = frozenset({"InvalidToken", "ExpiredToken", "TokenRefreshRequired"})
_WRONG_REGION = frozenset({"PermanentRedirect", "AuthorizationHeaderMalformed", "301"})
_NO_QUEUE = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})
#: Codes that say "not now" rather than "never": throttling and server-side trouble.
_TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestLimitExceeded",
        "TooManyRequests",
        "TooManyRequestsException",
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
    }
)


#: Failed S3 requests of this process by (store, error code), for the Prometheus metrics.
_request_errors: Counter[tuple[str, str]] = Counter()
_request_errors_lock = threading.Lock()


def count_request_error(store: str, error: BaseException) -> None:
    """Count one failed request of `store` under its error code (or exception class)."""
    cause = root_cause(error)
    code = error_code(cause) if isinstance(cause, ClientError) else type(cause).__name__
    with _request_errors_lock:
        _request_errors[(store, code)] += 1


def request_error_counts() -> dict[tuple[str, str], int]:
    """Failed S3 requests since the process started, by (store, error code)."""
    with _request_errors_lock:
        return dict(_request_errors)


def error_code(error: ClientError) -> str:
    """The service's error code (`NoSuchBucket`, `AccessDenied`, `404` for a bare HEAD)."""
    code = error.response.get("Error", {}).get("Code")
    if code:
        return str(code)
    return str(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "unknown"))


def is_transient(error: BaseException) -> bool:
    """Whether the failed call may succeed later unchanged: the endpoint could not be reached
    or timed out, the connection broke, or the service throttled or answered 5xx. Missing
    buckets, denied access and bad credentials are not (retrying cannot fix them)."""
    cause = root_cause(error)
    if isinstance(cause, ClientError):
        status = cause.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return error_code(cause) in _TRANSIENT_CODES or (isinstance(status, int) and status >= 500)
    if isinstance(cause, SSLError | ProxyConnectionError):
        return False  # a certificate or proxy setting that is wrong stays wrong
    return isinstance(
        cause, EndpointConnectionError | ConnectTimeoutError | HTTPClientError | IncompleteReadError
    )


def root_cause(error: BaseException) -> BaseException:
    """The botocore error behind a wrapper (boto3's S3UploadFailedError keeps it as context,
    s3transfer's RetriesExceededError as `last_exception`)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ClientError | BotoCoreError):
            return current
        last = getattr(current, "last_exception", None)
        current = (
            last if isinstance(last, BaseException) else (current.__cause__ or current.__context__)
        )
    return error


def describe_error(
    error: BaseException,
    *,
    bucket: str | None = None,
    endpoint: str | None = None,
    store: str | None = None,
    service: str = "S3",
) -> str:
    """One line saying what went wrong talking to S3 (or SQS) and what to check.

    Never includes credentials: for known codes the service's own message is not repeated.
    """
    cause = root_cause(error)
    where = endpoint or "the AWS endpoint"
    check = f"check the credentials of store '{store}'" if store else "check the AWS credentials"
    if isinstance(cause, ClientError):
        code = error_code(cause)
        message = cause.response.get("Error", {}).get("Message") or ""
        if code == "NoSuchBucket":
            return f"bucket '{bucket}' does not exist (NoSuchBucket)"
        if code in NOT_FOUND_CODES:
            return f"no such object ({code})"
        if code in _DENIED:
            return f"access denied ({code}) — {check}"
        if code == "InvalidAccessKeyId":
            return f"the endpoint does not know the access key id (InvalidAccessKeyId) — {check}"
        if code == "SignatureDoesNotMatch":
            return (
                "the request signature does not match; the secret access key is probably "
                f"wrong (SignatureDoesNotMatch) — {check}"
            )
        if code in _BAD_TOKEN:
            return f"the session token is invalid or expired ({code}) — {check}"
        if code in _WRONG_REGION:
            return f"the bucket is in another region ({code}) — set the store's region"
        if code in _NO_QUEUE:
            return f"the queue does not exist ({code})"
        return _one_line(f"{message} ({code})" if message else f"request failed ({code})")
    if isinstance(cause, EndpointConnectionError):
        return f"cannot reach endpoint {where} — is the {service} server running?"
    if isinstance(cause, ConnectTimeoutError | ReadTimeoutError):
        return f"timed out talking to endpoint {where}"
    if isinstance(cause, NoCredentialsError | PartialCredentialsError):
        return (
            "no AWS credentials found — set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
            "AWS_PROFILE, or the store's `credentials`"
        )
    if isinstance(cause, ProfileNotFound):
        return f"AWS profile '{cause.kwargs.get('profile')}' is not configured (ProfileNotFound)"
    return _one_line(f"{type(cause).__name__}: {cause}")


def _one_line(text: str) -> str:
    return one_line(text, 300)
