"""One interface over storage URIs: local paths / file://, http(s):// (input), s3:// (plugged in).

`StorageRegistry.for_uri(uri)` picks the backend; archive handling is in
`autoinfer.storage.archives`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from autoinfer.storage.base import ObjectInfo, Storage, join_uri
from autoinfer.storage.http import HttpStorage
from autoinfer.storage.local import LocalStorage, LocalStore
from autoinfer.storage.registry import StorageFactory, StorageRegistry


def open_registry(config: Config, resolve_secret: Callable[[str], str] = str) -> StorageRegistry:
    """The registry for a service configuration: its local stores, http(s), and S3."""
    from autoinfer.storage.s3 import make_s3_factory

    registry = StorageRegistry(config.stores, base_dir=config.base_dir)
    registry.register("s3", make_s3_factory(config.stores, resolve_secret))
    return registry


__all__ = [
    "HttpStorage",
    "LocalStorage",
    "LocalStore",
    "ObjectInfo",
    "Storage",
    "StorageFactory",
    "StorageRegistry",
    "join_uri",
    "open_registry",
]

if TYPE_CHECKING:
    from autoinfer.config import Config
