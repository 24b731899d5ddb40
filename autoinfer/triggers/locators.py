"""How a store names its objects: `Locator` (bucket, key) <-> URI, and `S3Locator` for `s3://`."""

from __future__ import annotations

from typing import Protocol


class Locator(Protocol):
    """Names objects in one store's URI scheme (LocalStore: file://; S3Locator: s3://)."""

    name: str

    def uri_for(self, bucket: str, key: str) -> str: ...

    def bucket_uri(self, bucket: str) -> str: ...

    def place(self, uri: str) -> tuple[str, str] | None:
        """(bucket, key) of `uri` when it names an object of this store, else None;
        StorageError when it lies in the store but names no bucket (the store's root)."""
        ...


class S3Locator:
    """`s3://bucket/key` names, for S3-compatible stores and sources without a store."""

    name = "s3"

    def place(self, uri: str) -> tuple[str, str] | None:
        if not uri.startswith("s3://"):
            return None
        bucket, _, key = uri[5:].partition("/")
        return (bucket, key) if bucket else None

    def uri_for(self, bucket: str, key: str) -> str:
        return f"s3://{bucket}/{key}"

    def bucket_uri(self, bucket: str) -> str:
        return f"s3://{bucket}"
