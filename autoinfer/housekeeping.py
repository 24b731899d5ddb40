"""The service's housekeeping: small periodic tasks on one background thread.

Retention sweeps, the data folder's size and the overview's samples run here, each every so
many seconds, off the request and job paths. A task that raises is logged and runs again at
its next turn; `stop()` interrupts the wait at once (a long task checks `stopping` itself).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

log = logging.getLogger("autoinfer.housekeeping")


@dataclass
class PeriodicTask:
    """`run` every `every_s` seconds, the first time `first_after_s` after the start."""

    name: str
    every_s: float
    run: Callable[[], object]
    first_after_s: float = 0.0


class Housekeeping:
    """Runs `tasks` when they are due, on one daemon thread; `clock` is monotonic seconds."""

    def __init__(
        self,
        tasks: Sequence[PeriodicTask],
        *,
        clock: Callable[[], float] = time.monotonic,
        stopping: threading.Event | None = None,
    ) -> None:
        self.tasks = list(tasks)
        self.clock = clock
        self.stopping = stopping or threading.Event()
        self._due: dict[str, float] = {}
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self.stopping.clear()
        self.schedule()
        self._thread = threading.Thread(
            target=self._loop, name="autoinfer-housekeeping", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self.stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._thread = None

    def schedule(self) -> None:
        """Set each task's first turn, counted from now (`start` does this)."""
        now = self.clock()
        self._due = {task.name: now + task.first_after_s for task in self.tasks}

    def run_due(self) -> list[str]:
        """Run every task whose time has come; the names of those that ran."""
        ran = []
        for task in self.tasks:
            now = self.clock()
            if self.stopping.is_set() or now < self._due.get(task.name, now):
                continue
            try:
                task.run()
            except Exception:  # one failing task must not stop the others or the thread
                log.exception(
                    "housekeeping task %s failed; it runs again in %.0f s", task.name, task.every_s
                )
            self._due[task.name] = self.clock() + task.every_s
            ran.append(task.name)
        return ran

    def _loop(self) -> None:
        while not self.stopping.is_set():
            self.run_due()
            next_due = min(self._due.values(), default=self.clock() + 1.0)
            self.stopping.wait(max(0.05, min(1.0, next_due - self.clock())))
