"""The executor interface shared by the local pool and the Ray executor."""

from __future__ import annotations

import os
import socket
import uuid
from abc import ABC, abstractmethod


def executor_name() -> str:
    """A name unique to this process: host, pid and a random suffix."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Executor(ABC):
    """Claims jobs from the store, runs them and renews their leases while they run."""

    owner: str

    @abstractmethod
    def start(self) -> None:
        """Begin claiming and running jobs in the background."""

    @abstractmethod
    def wake(self) -> None:
        """A job was queued: look for work now rather than at the next poll."""

    @abstractmethod
    def cancel(self, job_id: str, reason: str = "stopped on request") -> bool:
        """Stop a job this executor runs, at once; False if it does not run it."""

    @abstractmethod
    def stop(self, grace_s: float = 30.0) -> None:
        """Stop claiming; let running jobs finish for `grace_s`, then hand the rest back."""

    @abstractmethod
    def stats(self) -> dict[str, int]:
        """Running and free slots, for status and metrics."""
