"""One interface over storage URIs: local paths / file://, http(s):// (input), s3:// (plugged in).

`StorageRegistry.for_uri(uri)` picks the backend; archive handling is in
`autoinfer.storage.archives`.
"""

from autoinfer.storage.base import ObjectInfo, Storage, join_uri
from autoinfer.storage.http import HttpStorage
from autoinfer.storage.local import LocalStorage, LocalStore
from autoinfer.storage.registry import StorageFactory, StorageRegistry

__all__ = [
    "HttpStorage",
    "LocalStorage",
    "LocalStore",
    "ObjectInfo",
    "Storage",
    "StorageFactory",
    "StorageRegistry",
    "join_uri",
]
