"""What every event source shares: a name, start/stop, and the pipeline's `ingest` to call."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from autoinfer.events.kinds import source_kind
from autoinfer.events.model import S3Event

if TYPE_CHECKING:
    from autoinfer.config import SourceConfig
    from autoinfer.inbox import EventRecord

#: `ingest(events, source_name)`: stores the events durably, then dispatches them.
Ingest = Callable[[Sequence[S3Event], str], "list[EventRecord]"]


class Source(ABC):
    """An event source. Active ones (watch, poll, sqs) run a thread between start and stop;
    passive ones (webhook) are fed by the HTTP API."""

    name: str

    @abstractmethod
    def start(self) -> None:
        """Begin reporting events; returns at once."""

    @abstractmethod
    def stop(self, timeout: float = 10.0) -> None:
        """Stop reporting and wait (up to `timeout`) for the source's threads to end."""


def source_name(config: SourceConfig) -> str:
    """A stable name for a configured source; it keys the source's cursor and its events.

    `watch:local`, `webhook:lake`, `poll:lake:data/incoming/`, `sqs:<queue url>`.
    """
    return source_kind(config).name(config)
