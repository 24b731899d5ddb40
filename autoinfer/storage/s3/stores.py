"""Which configured S3 store serves a bucket, and the `StorageRegistry` factory for `s3://`."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

from autoinfer.storage.base import Storage
from autoinfer.storage.kinds import stores_of_type
from autoinfer.storage.s3.storage import DEFAULT_STORE, S3Storage
from autoinfer.storage.s3.uris import parse_s3_uri

if TYPE_CHECKING:
    from autoinfer.config import StoreConfig


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
