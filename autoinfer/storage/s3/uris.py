"""`s3://bucket/key` URIs: split into bucket and key, and the listing prefix a key names."""

from __future__ import annotations

from autoinfer.errors import StorageError


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
