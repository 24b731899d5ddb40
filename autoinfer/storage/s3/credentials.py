"""A configured S3 store's keys: read from its `credentials` secret, never logged or shown."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from autoinfer.errors import ConfigError

if TYPE_CHECKING:
    from autoinfer.config import StoreConfig


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
