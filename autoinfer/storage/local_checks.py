"""Doctor's checks of local stores: each root is a folder the service may write."""

from __future__ import annotations

import os
from collections.abc import Iterator

from autoinfer.config import Config
from autoinfer.findings import Finding, ok, problem
from autoinfer.storage.kinds import stores_of_type


class LocalStoreChecks:
    """The local stores' folders (BackendChecks); they have no sources or delivery to check."""

    def __init__(self, config: Config) -> None:
        self.config = config

    def check_stores(self) -> Iterator[Finding]:
        for name, store in stores_of_type(self.config.stores, "local"):
            if not store.root:
                continue
            root = self.config.resolve_path(store.root)
            if root.exists() and not root.is_dir():
                yield problem(f"store '{name}': {root} is not a folder — fix stores.{name}.root")
            elif root.exists() and not os.access(root, os.W_OK | os.X_OK):
                yield problem(f"store '{name}': {root} is not writable — fix its permissions")
            else:
                yield ok(f"store '{name}': folder {root}")

    def check_sources(self) -> Iterator[Finding]:
        return iter(())

    def check_delivery(self) -> Iterator[Finding]:
        return iter(())
