"""The store types a configuration may name (`stores.<name>.type`) and what the rest of the
service needs to know of each: the one place that tells them apart.

The backends themselves are served by URI through `autoinfer.storage.registry`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from autoinfer.config import StoreConfig


@dataclass(frozen=True)
class StoreKind:
    """One store type's answers to the questions asked of any store."""

    #: Whether events of any of its buckets can reach the service (S3 sends bucket
    #: notifications to a webhook or queue), so a trigger's bucket cannot be checked here.
    any_bucket: bool


STORE_KINDS: dict[str, StoreKind] = {
    "local": StoreKind(any_bucket=False),
    "s3": StoreKind(any_bucket=True),
}


def store_kind(config: StoreConfig) -> StoreKind:
    """The kind of a configured store (the config model admits only the types above)."""
    return STORE_KINDS[config.type]


def stores_of_type(
    configs: Mapping[str, StoreConfig], store_type: str
) -> list[tuple[str, StoreConfig]]:
    """The configured stores of one type, in configuration order: what a backend reads its
    own stores' settings from."""
    return [(name, config) for name, config in configs.items() if config.type == store_type]
