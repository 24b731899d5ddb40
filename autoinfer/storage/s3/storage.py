"""`S3Storage`: one S3 (or S3-compatible) endpoint on boto3, with its own settings and
credentials.

One `S3Storage` per configured store, each with one boto3 client (clients are thread-safe,
sessions are not). Transfers stream through s3transfer, in parts above a threshold, so no
object is ever held whole in memory. Every botocore failure becomes a one-line StorageError
naming the URI and what to check (`autoinfer.storage.s3.errors`), never a traceback, never a
secret.

URIs are not percent-encoded: `s3://data/my photos/été.zip` names the key `my photos/été.zip`.
"""

from __future__ import annotations

import logging
import mimetypes
import os
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config as BotoConfig
from botocore.exceptions import (
    ClientError,
)

from autoinfer.errors import ConfigError, StorageError
from autoinfer.storage.base import ObjectInfo, Storage
from autoinfer.storage.budget import ByteBudget
from autoinfer.storage.s3.credentials import store_keys
from autoinfer.storage.s3.errors import (
    AWS_ERRORS,
    NOT_FOUND_CODES,
    count_request_error,
    describe_error,
    error_code,
    is_transient,
)
from autoinfer.storage.s3.uris import parse_s3_uri, prefix_of

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
            if error_code(error) in NOT_FOUND_CODES:
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
            if error_code(error) in NOT_FOUND_CODES | {"NoSuchBucket"}:
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


def env_endpoint() -> str | None:
    """The S3 endpoint the standard AWS variables name, which boto3 uses when a store has none."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def _utc(moment: datetime | None) -> datetime | None:
    return moment.astimezone(UTC) if moment is not None else None


def _etag(value: str | None) -> str | None:
    return (value.strip('"') or None) if value else None


# --- stores ---------------------------------------------------------------------------------
