"""When a watched file counts as completely written (`events.watch`): not a hidden, temp or
partial file by its name, and either the kernel says no process writes it, or inotify saw it
closed or renamed in, or it stayed unchanged for `settle_s`. Pure: the watcher asks.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Files whose names end so are still being written by a browser, rsync, curl, etc.
PARTIAL_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".download")


def is_partial(relative: str) -> bool:
    """Whether a path (relative to the root) names a hidden, temp or partial file."""
    parts = relative.split("/")
    return any(p.startswith(".") for p in parts) or parts[-1].lower().endswith(PARTIAL_SUFFIXES)


@dataclass
class Settling:
    """A file seen changing: its last (size, mtime) and since when it has not changed;
    whether inotify saw it closed after writing or renamed in (`closed`) or being written
    with no close since (`writing`)."""

    stamp: tuple[int, int]
    since: float
    closed: bool = False
    writing: bool = False

    def complete(self, now: float, settle_s: float, writing: bool | None) -> bool:
        """Whether the file counts as completely written: `writing` is the kernel's answer
        (None where it cannot tell); else closed or renamed in as inotify saw it, else no
        write seen and unchanged for `settle_s`."""
        if writing is not None:
            return not writing  # the kernel knows: no timer needed
        if self.closed:
            return True  # closed by its writer or renamed in, as inotify saw it
        return not self.writing and now - self.since >= settle_s


def stamp_text(stamp: tuple[int, int]) -> str:
    """How a file's (size, mtime_ns) stamp is kept in the source's cursor."""
    return f"{stamp[0]}:{stamp[1]}"
