"""`s3://bucket/key` on boto3: AWS S3 and S3-compatible stores (MinIO, Ceph RGW, R2, moto).

`storage` is the backend (`S3Storage`), `stores` picks a configured store by bucket and makes
the registry's factory, `errors` says what failed; `checks` and `notifications` are the
doctor's. The names below are the package's public API.
"""

from autoinfer.storage.s3.credentials import store_keys
from autoinfer.storage.s3.errors import (
    AWS_ERRORS,
    count_request_error,
    describe_error,
    error_code,
    is_transient,
    request_error_counts,
    root_cause,
)
from autoinfer.storage.s3.storage import (
    DEFAULT_MULTIPART_THRESHOLD,
    DEFAULT_STORE,
    MIB,
    MIN_PART_SIZE,
    S3Storage,
    env_endpoint,
)
from autoinfer.storage.s3.stores import choose_store, make_s3_factory
from autoinfer.storage.s3.uris import parse_s3_uri, prefix_of

__all__ = [
    "AWS_ERRORS",
    "DEFAULT_MULTIPART_THRESHOLD",
    "DEFAULT_STORE",
    "MIB",
    "MIN_PART_SIZE",
    "S3Storage",
    "choose_store",
    "count_request_error",
    "describe_error",
    "env_endpoint",
    "error_code",
    "is_transient",
    "make_s3_factory",
    "parse_s3_uri",
    "prefix_of",
    "request_error_counts",
    "root_cause",
    "store_keys",
]
