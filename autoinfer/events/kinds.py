"""The source types a configuration may name (`sources[].type`) and what the rest of the
service needs to know of each: the one place that tells them apart.

How each is built is `autoinfer.events.builders`; doctor's checks sit beside the backends.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from autoinfer.config import SourceConfig


def _no_buckets(config: SourceConfig) -> set[str]:
    return set()


@dataclass(frozen=True)
class SourceKind:
    """One source type's answers to the questions asked of any source."""

    #: Whether it can report events of any bucket (a webhook or queue receives whatever the
    #: store's notification settings send), so a trigger's bucket cannot be checked here.
    any_bucket: bool
    #: The stable name of a configured source: it keys the source's cursor and its events.
    name: Callable[[SourceConfig], str]
    #: Buckets it is known to report (a poll source: its own).
    buckets: Callable[[SourceConfig], set[str]] = _no_buckets


def _store_name(config: SourceConfig) -> str:
    return f"{config.type}:{config.store}" if config.store else config.type


SOURCE_KINDS: dict[str, SourceKind] = {
    "watch": SourceKind(any_bucket=False, name=_store_name),
    "webhook": SourceKind(any_bucket=True, name=_store_name),
    "sqs": SourceKind(any_bucket=True, name=lambda c: f"sqs:{c.queue_url or ''}"),
    "poll": SourceKind(
        any_bucket=False,
        name=lambda c: f"poll:{c.store or ''}:{c.bucket or ''}/{c.prefix}",
        buckets=lambda c: {c.bucket} if c.bucket else set(),
    ),
}


def source_kind(config: SourceConfig) -> SourceKind:
    """The kind of a configured source (the config model admits only the types above)."""
    return SOURCE_KINDS[config.type]


def sources_of_type(
    sources: Sequence[SourceConfig], source_type: str
) -> list[tuple[int, SourceConfig]]:
    """The configured sources of one type with their places in `sources` (messages name
    `sources[i]`): what a backend's checks read (an S3 store's queues, a bucket's pollers)."""
    return [(index, config) for index, config in enumerate(sources) if config.type == source_type]
