"""Peak resident memory of a process and all its descendants, sampled in a thread.

Uses psutil when it is installed, else Linux's /proc. Shared pages (libraries, copy-on-write)
are counted once per process, so the sum errs on the high side.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from types import TracebackType
from typing import Self

MIB = 1024 * 1024


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of `pid` plus every process below it, in bytes (0 if unreadable)."""
    try:
        import psutil
    except ImportError:
        return sum(_proc_rss(p) for p in [pid, *_proc_descendants(pid)])
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.Error:
            continue  # ended between listing and reading
    return total


class PeakRss:
    """`with PeakRss() as peak:` samples this process's tree every `interval_s`; `peak.mib`."""

    def __init__(self, pid: int | None = None, interval_s: float = 0.1) -> None:
        self.pid = pid or os.getpid()
        self.interval_s = interval_s
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="bench-rss", daemon=True)

    @property
    def mib(self) -> float:
        return self.peak_bytes / MIB

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_bytes = max(self.peak_bytes, tree_rss_bytes(self.pid))

    def _sample(self) -> None:
        while True:
            self.peak_bytes = max(self.peak_bytes, tree_rss_bytes(self.pid))
            if self._stop.wait(self.interval_s):
                return


def _proc_rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass  # ended, or a kernel thread without memory
    return 0


def _proc_descendants(pid: int) -> list[int]:
    """Every process below `pid`, from /proc/<pid>/task/<tid>/children (cheap: no scan of every
    process on the machine, which would cost the measured process noticeable CPU)."""
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = list(Path(f"/proc/{parent}/task").iterdir())
        except OSError:
            continue  # ended meanwhile
        for task in tasks:
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                found.append(child)
                todo.append(child)
    return found
