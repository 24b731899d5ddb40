"""What `autoinfer doctor` reports: findings, and the checks each kind of backend runs.

The doctor (`autoinfer.cli.doctor`) checks what is common (database, data folder, sandbox,
the configuration as a whole) and asks each backend's checks (`autoinfer.storage.checks`)
about the stores and sources of its kind; it never asks which kind a store is.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Finding:
    """One result: a check that passed, or a problem with what to do about it."""

    ok: bool
    message: str


def ok(message: str) -> Finding:
    return Finding(True, message)


def problem(message: str) -> Finding:
    return Finding(False, message)


class BackendChecks(Protocol):
    """The doctor's checks of one kind of backend over the whole configuration, run in three
    rounds across all kinds: stores, then sources, then whether events reach the sources."""

    def check_stores(self) -> Iterator[Finding]:
        """Each configured store of this kind is reachable and usable."""
        ...

    def check_sources(self) -> Iterator[Finding]:
        """Each source this kind serves (an S3 store's queues) is reachable."""
        ...

    def check_delivery(self) -> Iterator[Finding]:
        """The events the triggers wait for are sent where a source receives them."""
        ...
