"""`s3://bucket/key` on boto3: AWS S3 and S3-compatible stores (MinIO, Ceph RGW, R2, moto).

One `S3Storage` per configured store, each with one boto3 client (clients are thread-safe,
sessions are not). Transfers stream through s3transfer, in parts above a threshold, so no
object is ever held whole in memory. Every botocore failure becomes a one-line StorageError
naming the URI and what to check (`describe_error`), never a traceback, never a secret.

URIs are not percent-encoded: `s3://data/my photos/été.zip` names the key `my photos/été.zip`.
"""

from __future__ import annotations

import logging
import mimetypes
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import boto3
from boto3.exceptions import Boto3Error
from boto3.s3.transfer import TransferConfig
from botocore.config import Config as BotoConfig
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

from autoinfer.errors import ConfigError, StorageError
from autoinfer.storage.base import ObjectInfo, Storage
from autoinfer.storage.budget import ByteBudget
from autoinfer.storage.kinds import stores_of_type

if TYPE_CHECKING:
    from autoinfer.config import StoreConfig

log = logging.getLogger("autoinfer.storage.s3")

MIB = 1024 * 1024
#: Files larger than this are uploaded (and objects downloaded) in parts.
DEFAULT_MULTIPART_THRESHOLD = 8 * MIB
#: S3 refuses parts smaller than this (except the last one).
MIN_PART_SIZE = 5 * MIB
#: The name of the store used for `s3://` URIs when no S3 store is configured.
DEFAULT_STORE = "default"

#: What boto3, botocore and s3transfer raise; each becomes a StorageError.
AWS_ERRORS: tuple[type[Exception], ...] = (
    BotoCoreError,
    ClientError,
    Boto3Error,
    TransferRetriesExceeded,
)

_NOT_FOUND = frozenset({"NoSuchKey", "404", "NotFound"})
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


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/some/key` → `("bucket", "some/key")`; the key may be empty or end in `/`."""
    if uri[:5].lower() != "s3://":
        raise StorageError(f"{uri}: not an s3:// URI")
    bucket, _, key = uri[5:].partition("/")
    if not bucket:
        raise StorageError(f"{uri}: names no bucket (expected s3://BUCKET/KEY)")
    if "\x00" in key:
        raise StorageError(f"{uri!r}: the key contains a NUL character")
    return bucket, key


def prefix_of(key: str) -> str:
    """The listing prefix a URI's key names: `p` and `p/` → `p/`; the bucket itself → `""`."""
    return key.rstrip("/") + "/" if key.strip("/") else ""


class S3Storage(Storage):
    """One S3 (or S3-compatible) endpoint with its own settings and credentials.

    Credentials: `access_key_id`/`secret_access_key` when given, else the standard AWS chain
    (environment variables, `profile` or AWS_PROFILE, shared files, instance roles). With a
    custom endpoint (`endpoint_url`, else AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL) and no
    `addressing_style`, path-style addressing is used (what MinIO, Ceph and moto expect) and
    checksums are only sent where S3 requires them.
    """

    schemes = ("s3",)
    writable = True
    reports_progress = True

    def __init__(
        self,
        *,
        name: str = DEFAULT_STORE,
        endpoint_url: str | None = None,
        region: str | None = None,
        addressing_style: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
        profile: str | None = None,
        max_attempts: int = 5,
        connect_timeout_s: float = 10.0,
        read_timeout_s: float = 60.0,
        multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD,
        max_concurrency: int = 4,
        list_page_size: int = 1000,
    ) -> None:
        if (access_key_id is None) != (secret_access_key is None):
            raise ConfigError(f"store '{name}': give both the access key id and the secret key")
        self.name = name
        self.endpoint_url = endpoint_url
        self.region = region
        self.addressing_style = addressing_style
        self.profile = profile
        self.max_attempts = max_attempts
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.multipart_threshold = multipart_threshold
        self.list_page_size = list_page_size
        self.transfer_config = TransferConfig(
            multipart_threshold=multipart_threshold,
            multipart_chunksize=max(multipart_threshold, MIN_PART_SIZE),
            max_concurrency=max_concurrency,
        )
        self._keys = (access_key_id, secret_access_key, session_token)
        self._client: Any = None
        self._lock = threading.Lock()

    @classmethod
    def from_config(
        cls,
        name: str,
        config: StoreConfig,
        resolve_secret: Callable[[str], str] = str,
        **options: Any,
    ) -> S3Storage:
        """The store `name` as configured; `resolve_secret` turns `secret:NAME` into its value."""
        access_key_id, secret_access_key, session_token = store_keys(name, config, resolve_secret)
        return cls(
            name=name,
            endpoint_url=config.endpoint_url,
            region=config.region,
            addressing_style=config.addressing_style,
            access_key_id=access_key_id,
            secret_access_key=secret_access_key,
            session_token=session_token,
            profile=config.profile,
            **options,
        )

    def __repr__(self) -> str:
        return f"S3Storage(name={self.name!r}, endpoint_url={self.endpoint_url!r})"

    # -- the client -------------------------------------------------------------------------

    def session(self) -> boto3.Session:
        """A new boto3 session with this store's credentials (sessions are not thread-safe)."""
        access_key_id, secret_access_key, session_token = self._keys
        return boto3.Session(
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            aws_session_token=session_token,
            region_name=self.region,
            profile_name=None if access_key_id else self.profile,
        )

    def client_config(self) -> BotoConfig:
        """Retries, timeouts and addressing for this store's clients."""
        options: dict[str, Any] = {
            "retries": {"max_attempts": self.max_attempts, "mode": "standard"},
            "connect_timeout": self.connect_timeout_s,
            "read_timeout": self.read_timeout_s,
            "max_pool_connections": 32,
        }
        custom_endpoint = self.endpoint_url or env_endpoint()
        addressing_style = self.addressing_style or ("path" if custom_endpoint else None)
        if addressing_style:
            options["s3"] = {"addressing_style": addressing_style}
        if custom_endpoint:
            # Many S3-compatible stores reject the CRC checksums botocore now sends by default.
            options["request_checksum_calculation"] = "when_required"
            options["response_checksum_validation"] = "when_required"
        return BotoConfig(**options)

    @property
    def client(self) -> Any:
        """The store's S3 client, created on first use and shared by every thread."""
        with self._lock:
            if self._client is None:
                self._client = self.session().client(
                    "s3", endpoint_url=self.endpoint_url, config=self.client_config()
                )
            return self._client

    @property
    def endpoint(self) -> str:
        """The endpoint requests go to, for messages."""
        if self._client is not None:
            return str(self._client.meta.endpoint_url)
        return self.endpoint_url or "the AWS S3 endpoint"

    # -- the Storage interface --------------------------------------------------------------

    def stat(self, uri: str) -> ObjectInfo:
        """The object at `uri` (HEAD); StorageError naming a missing object or bucket."""
        bucket, key = parse_s3_uri(uri)
        if not key or key.endswith("/"):
            raise StorageError(f"{uri}: names a prefix, not an object")
        info = self._head(uri, bucket, key)
        if info is None:
            self._raise_missing_bucket(uri, bucket)
            raise StorageError(f"{uri}: no such object (NoSuchKey)")
        return info

    def list(self, uri: str) -> Iterator[ObjectInfo]:
        """Objects below the prefix `uri` (`s3://b/p` and `s3://b/p/` both list `p/`), keys
        relative to it, pages fetched lazily; folder markers (keys ending in `/`) skipped.

        The first page is fetched at once, so a missing bucket fails here, not mid-iteration.
        """
        bucket, key = parse_s3_uri(uri)
        pages = self._pages(uri, bucket, prefix_of(key))
        first = self._next_page(uri, pages)
        return self._infos(uri, bucket, prefix_of(key), first, pages)

    def download(self, uri: str, dest: Path, budget: ByteBudget | None = None) -> Path:
        """An object lands as `dest/<base name>` (returned); a prefix lands below `dest` with
        the keys' relative paths (`dest` returned). An object wins over a prefix of the same
        name. Each file is streamed to a temporary name, then renamed into place. With a
        `budget`, each object's HEAD or listed size is checked before it is fetched."""
        bucket, key = parse_s3_uri(uri)
        if key and not key.endswith("/"):
            info = self._head(uri, bucket, key)
            if info is not None:
                target = dest / PurePosixPath(key).name
                if budget is not None:
                    budget.check_declared(uri, info.size)
                self._download_file(uri, bucket, key, target, budget)
                return target
        prefix = prefix_of(key)
        count = 0
        # With a budget, the whole listing is summed before the first object is fetched.
        infos = self.list(uri) if budget is None else list(self.list(uri))
        if budget is not None:
            budget.check_declared(uri, sum(info.size for info in infos))
        for info in infos:
            relative = PurePosixPath(info.key)
            if relative.is_absolute() or ".." in relative.parts:
                raise StorageError(f"{info.uri}: the key would leave the destination folder")
            target = dest.joinpath(*relative.parts)
            self._download_file(info.uri, bucket, prefix + info.key, target, budget)
            count += 1
        if count == 0:
            self._raise_missing_bucket(uri, bucket)
            raise StorageError(f"{uri}: no such object or prefix")
        return dest

    def upload(
        self, src: Path, uri: str, *, progress: Callable[[int], None] | None = None
    ) -> ObjectInfo:
        """Write `src` as the object `uri`, in parts above `multipart_threshold` (S3 makes a
        multipart object visible only once complete, so readers never see half of it).
        `progress(n)` is called (from transfer threads) as each further `n` bytes are sent."""
        bucket, key = parse_s3_uri(uri)
        if not key or key.endswith("/"):
            raise StorageError(f"{uri}: names a prefix; name the object to write")
        if not src.is_file():
            raise StorageError(f"{src}: no such file to upload")
        extra: dict[str, str] = {}
        content_type, _ = mimetypes.guess_type(src.name)
        if content_type:
            extra["ContentType"] = content_type
        try:
            self.client.upload_file(
                str(src),
                bucket,
                key,
                ExtraArgs=extra,
                Config=self.transfer_config,
                Callback=progress,
            )
        except AWS_ERRORS as error:  # before OSError: botocore's timeouts are OSErrors too
            raise self._error(uri, bucket, error) from None
        except OSError as error:
            raise StorageError(f"{uri}: cannot read {src}: {error.strerror or error}") from None
        return self.stat(uri)

    # -- internals --------------------------------------------------------------------------

    def upload_with_progress(
        self, src: Path, uri: str, progress: Callable[[int], None]
    ) -> ObjectInfo:
        return self.upload(src, uri, progress=progress)

    def _head(self, uri: str, bucket: str, key: str) -> ObjectInfo | None:
        """The object's info, None if there is none (404); StorageError on any other failure."""
        try:
            response = self.client.head_object(Bucket=bucket, Key=key)
        except ClientError as error:
            if error_code(error) in _NOT_FOUND:
                return None
            raise self._error(uri, bucket, error) from None
        except AWS_ERRORS as error:
            raise self._error(uri, bucket, error) from None
        version = response.get("VersionId")
        return ObjectInfo(
            uri=f"s3://{bucket}/{key}",
            key=key,
            size=int(response.get("ContentLength", 0)),
            etag=_etag(response.get("ETag")),
            modified=_utc(response.get("LastModified")),
            version_id=None if version in (None, "null") else version,
        )

    def _raise_missing_bucket(self, uri: str, bucket: str) -> None:
        """StorageError if `bucket` does not exist (a HEAD's 404 does not say which is missing)."""
        try:
            self.client.head_bucket(Bucket=bucket)
        except ClientError as error:
            if error_code(error) in _NOT_FOUND | {"NoSuchBucket"}:
                count_request_error(self.name, error)
                raise StorageError(
                    f"{uri}: bucket '{bucket}' does not exist (NoSuchBucket)"
                ) from None
            raise self._error(uri, bucket, error) from None
        except AWS_ERRORS as error:
            raise self._error(uri, bucket, error) from None

    def _pages(self, uri: str, bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
        try:
            paginator = self.client.get_paginator("list_objects_v2")
            return iter(
                paginator.paginate(
                    Bucket=bucket,
                    Prefix=prefix,
                    PaginationConfig={"PageSize": self.list_page_size},
                )
            )
        except AWS_ERRORS as error:
            raise self._error(uri, bucket, error) from None

    def _next_page(self, uri: str, pages: Iterator[dict[str, Any]]) -> dict[str, Any] | None:
        try:
            return next(pages, None)
        except AWS_ERRORS as error:
            raise self._error(uri, parse_s3_uri(uri)[0], error) from None

    def _infos(
        self,
        uri: str,
        bucket: str,
        prefix: str,
        page: dict[str, Any] | None,
        pages: Iterator[dict[str, Any]],
    ) -> Iterator[ObjectInfo]:
        while page is not None:
            for item in page.get("Contents", ()):
                key = item["Key"]
                if key.endswith("/"):
                    continue
                yield ObjectInfo(
                    uri=f"s3://{bucket}/{key}",
                    key=key[len(prefix) :],
                    size=int(item.get("Size", 0)),
                    etag=_etag(item.get("ETag")),
                    modified=_utc(item.get("LastModified")),
                )
            page = self._next_page(uri, pages)

    def _download_file(
        self, uri: str, bucket: str, key: str, target: Path, budget: ByteBudget | None = None
    ) -> None:
        callback = None if budget is None else (lambda count: budget.take(uri, count))
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            # s3transfer writes to a temporary name beside `target` and renames it when done.
            self.client.download_file(
                bucket, key, str(target), Config=self.transfer_config, Callback=callback
            )
        except AWS_ERRORS as error:  # before OSError: botocore's timeouts are OSErrors too
            raise self._error(uri, bucket, error) from None
        except OSError as error:
            raise StorageError(f"{uri}: cannot write {target}: {error.strerror or error}") from None

    def _error(self, uri: str, bucket: str, error: BaseException) -> StorageError:
        count_request_error(self.name, error)
        reason = describe_error(error, bucket=bucket, endpoint=self.endpoint, store=self.name)
        log.debug("%s: %s", uri, reason, exc_info=error)
        return StorageError(f"{uri}: {reason}", transient=is_transient(error))


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


def env_endpoint() -> str | None:
    """The S3 endpoint the standard AWS variables name, which boto3 uses when a store has none."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


# --- errors ---------------------------------------------------------------------------------


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
        if code in _NOT_FOUND:
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


def _one_line(text: str, limit: int = 300) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _utc(moment: datetime | None) -> datetime | None:
    return moment.astimezone(UTC) if moment is not None else None


def _etag(value: str | None) -> str | None:
    return (value.strip('"') or None) if value else None


# --- stores ---------------------------------------------------------------------------------


def store_keys(
    name: str, config: StoreConfig, resolve_secret: Callable[[str], str]
) -> tuple[str | None, str | None, str | None]:
    """(access key id, secret key, session token) from the store's `credentials` secret,
    which holds `ACCESS_KEY_ID:SECRET_ACCESS_KEY[:SESSION_TOKEN]`; all None for the AWS chain."""
    if not config.credentials:
        return None, None, None
    value = resolve_secret(config.credentials)
    parts = value.split(":", 2)
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise ConfigError(
            f"stores.{name}.credentials: must hold ACCESS_KEY_ID:SECRET_ACCESS_KEY "
            "(the value is not shown)"
        )
    return parts[0], parts[1], (parts[2] if len(parts) == 3 and parts[2] else None)


def choose_store(
    store_configs: Mapping[str, StoreConfig], bucket: str
) -> tuple[str, StoreConfig] | None:
    """The S3 store serving `bucket`: the only one; else the first whose `buckets` patterns
    (when the config has them) match; else the first S3 store; None when there is none."""
    s3_stores = stores_of_type(store_configs, "s3")
    if len(s3_stores) <= 1:
        return s3_stores[0] if s3_stores else None
    for name, config in s3_stores:
        patterns = getattr(config, "buckets", None) or ()
        if any(fnmatchcase(bucket, pattern) for pattern in patterns):
            return name, config
    return s3_stores[0]


def make_s3_factory(
    store_configs: Mapping[str, StoreConfig],
    resolve_secret: Callable[[str], str] = str,
    **options: Any,
) -> Callable[[str], Storage]:
    """A `StorageRegistry` factory for `s3://` URIs: picks the store by bucket
    (`choose_store`), or with no S3 store configured a default one on the standard AWS chain
    (AWS_ENDPOINT_URL, AWS_PROFILE, ... honoured by boto3). One `S3Storage` (one client) per
    store, built on first use; `options` go to every `S3Storage` (timeouts, part sizes...)."""
    cache: dict[str, S3Storage] = {}
    lock = threading.Lock()

    def factory(uri: str) -> Storage:
        bucket, _ = parse_s3_uri(uri)
        chosen = choose_store(store_configs, bucket)
        name = chosen[0] if chosen else DEFAULT_STORE
        with lock:
            storage = cache.get(name)
            if storage is None:
                if chosen is None:
                    storage = S3Storage(name=DEFAULT_STORE, **options)
                else:
                    storage = S3Storage.from_config(name, chosen[1], resolve_secret, **options)
                cache[name] = storage
            return storage

    return factory
