"""How much disk the data folder takes, and whether the disk holding it is nearly full.

Walking a folder of many files costs, so the size is measured at most once per `max_age_s`
(the service's housekeeping keeps it fresh; readers such as `/metrics` and `/v1/status` get the
last measurement). The disk's free space is one `statvfs` call, read each time.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

#: The disk counts as nearly full below this share free...
LOW_FREE_FRACTION = 0.05
#: ...or below this many bytes free.
LOW_FREE_BYTES = 1 << 30


@dataclass(frozen=True)
class DiskSpace:
    """The disk that holds a folder."""

    total_bytes: int
    free_bytes: int

    @property
    def nearly_full(self) -> bool:
        return self.free_bytes < LOW_FREE_BYTES or (
            self.total_bytes > 0 and self.free_bytes / self.total_bytes < LOW_FREE_FRACTION
        )

    def describe(self) -> str:
        share = self.free_bytes / self.total_bytes * 100 if self.total_bytes else 0.0
        return f"{format_bytes(self.free_bytes)} free of {format_bytes(self.total_bytes)} ({share:.1f} %)"


def disk_space(path: Path) -> DiskSpace:
    """Free and total space of the disk holding `path` (its nearest existing parent)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    usage = shutil.disk_usage(path)
    return DiskSpace(total_bytes=usage.total, free_bytes=usage.free)


def folder_bytes(root: Path) -> int:
    """Bytes the files under `root` occupy on disk (allocated blocks; links not followed)."""
    total = 0
    stack = [root]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        for entry in entries:
            try:
                stat = entry.stat(follow_symlinks=False)
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                total += stat.st_blocks * 512 if hasattr(stat, "st_blocks") else stat.st_size
            except FileNotFoundError:  # removed while we looked
                continue
    return total


class DataDirUsage:
    """The data folder's size, measured at most once per `max_age_s` (thread-safe)."""

    def __init__(
        self,
        root: Path,
        *,
        max_age_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.root = root
        self.max_age_s = max_age_s
        self.clock = clock
        self._lock = threading.Lock()
        self._bytes: int | None = None
        self._measured_at = 0.0

    def refresh(self) -> int:
        """Measure now (the housekeeping thread calls this)."""
        size = folder_bytes(self.root)
        with self._lock:
            self._bytes, self._measured_at = size, self.clock()
        return size

    def bytes(self) -> int:
        """The last measurement, or a new one when there is none or it is older than
        `max_age_s`."""
        with self._lock:
            cached = self._bytes
            if cached is not None and self.clock() - self._measured_at < self.max_age_s:
                return cached
        return self.refresh()

    def space(self) -> DiskSpace:
        return disk_space(self.root)


def format_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if count < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")
