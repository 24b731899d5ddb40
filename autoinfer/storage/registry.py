"""Which backend serves a URI: local paths and local stores, http(s), and pluggable schemes."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

from autoinfer.errors import ConfigError, StorageError
from autoinfer.storage.base import Storage
from autoinfer.storage.http import HttpStorage
from autoinfer.storage.kinds import stores_of_type
from autoinfer.storage.local import LocalStorage, LocalStore, path_from_uri

if TYPE_CHECKING:
    from autoinfer.config import StoreConfig

#: Builds (or returns a cached) backend for one URI of the scheme it was registered for.
StorageFactory = Callable[[str], Storage]

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")


def uri_scheme(uri: str) -> str:
    """The URI's scheme, lower case; `""` for a plain path (a Windows drive letter included)."""
    match = _SCHEME.match(uri)
    if match is None or len(match.group(1)) == 1:
        return ""
    return match.group(1).lower()


class StorageRegistry:
    """Maps URIs to backends: one place that knows which backends exist.

    Plain paths and `file://` URIs inside a configured local store's root go to that
    `LocalStore` (so its root is enforced), other local paths to `LocalStorage`;
    `http(s)://` to `HttpStorage`. Other schemes (`s3`) are served by factories given to
    `register`. Relative paths, in URIs and in store roots, are taken from `base_dir`.
    """

    def __init__(
        self,
        stores: Mapping[str, StoreConfig] | None = None,
        base_dir: Path | None = None,
        *,
        http_timeout: float = 30.0,
    ) -> None:
        self.base_dir = (base_dir or Path.cwd()).absolute()
        self._configs = dict(stores or {})
        self._local = LocalStorage(self.base_dir)
        self._http = HttpStorage(timeout=http_timeout)
        self._factories: dict[str, StorageFactory] = {}
        self._local_stores: dict[str, LocalStore] = {}
        for name, config in stores_of_type(self._configs, "local"):
            if not config.root:
                raise ConfigError(f"stores.{name}: a local store needs a `root` folder")
            self._local_stores[name] = LocalStore(config.root, name=name, base_dir=self.base_dir)

    @property
    def store_configs(self) -> Mapping[str, StoreConfig]:
        """The configured stores by name (what an S3 factory reads its endpoints from)."""
        return MappingProxyType(self._configs)

    @property
    def local_stores(self) -> Mapping[str, LocalStore]:
        """The configured local stores by name."""
        return MappingProxyType(self._local_stores)

    def register(self, scheme: str, factory: StorageFactory) -> None:
        """Serve URIs of `scheme` (e.g. `s3`) with `factory(uri)`; replaces a built-in one."""
        self._factories[scheme.lower()] = factory

    def for_uri(self, uri: str) -> Storage:
        """The backend for `uri`; StorageError for a scheme nothing serves."""
        scheme = uri_scheme(uri)
        factory = self._factories.get(scheme)
        if factory is not None:
            return factory(uri)
        if scheme in ("", "file"):
            return self._store_containing(path_from_uri(uri, self.base_dir)) or self._local
        if scheme in ("http", "https"):
            return self._http
        if scheme == "s3":
            raise StorageError(f"{uri}: the S3 backend is not configured")
        raise StorageError(
            f"{uri}: unsupported URI scheme '{scheme}' (use a path, file://, s3:// or http(s)://)"
        )

    def local_store(self, name: str) -> LocalStore:
        """The configured local store `name`; ConfigError if there is none by that name."""
        store = self._local_stores.get(name)
        if store is not None:
            return store
        if name in self._configs:
            kind = self._configs[name].type
            raise ConfigError(f"store '{name}' is a {kind} store, not a local one")
        known = ", ".join(sorted(self._configs)) or "none"
        raise ConfigError(f"store '{name}' is not configured (configured: {known})")

    def _store_containing(self, path: Path) -> LocalStore | None:
        """The local store whose root holds `path`; the deepest root when roots nest."""
        holders = [store for store in self._local_stores.values() if store.contains(path)]
        return max(holders, key=lambda store: len(store.root.parts), default=None)
