"""A byte budget for downloads: checked against declared sizes before copying, and against
the bytes actually written while copying.

A job may use `disk_size` GiB of scratch. Its input is refused before a byte is copied when
the store already says it is larger (a local file's `stat`, S3's HEAD or listing sizes, an
HTTP `Content-Length`), and the copy stops as soon as more bytes arrived than the budget
allows (a file that grows, a server that lies or sends no length). Either way the job fails
with `InputRejected` at its first attempt: a new attempt would meet the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable

from autoinfer.errors import InputRejected

GIB = 1024**3


def format_size(size: int) -> str:
    """`3.00 GiB`, `512.0 MiB`, `12 bytes`."""
    if size >= GIB:
        return f"{size / GIB:.2f} GiB"
    if size >= 1024**2:
        return f"{size / 1024**2:.1f} MiB"
    return f"{size} bytes"


class ByteBudget:
    """How many bytes a download may write in all. `label` names what is downloaded (`input`),
    `limit_text` the limit in the user's words (`the job's disk_size of 1 GiB`)."""

    def __init__(
        self, limit: int, *, label: str = "download", limit_text: str | None = None
    ) -> None:
        self.limit = limit
        self.label = label
        self.limit_text = limit_text or format_size(limit)
        self.used = 0

    @property
    def left(self) -> int:
        return max(0, self.limit - self.used)

    def check_declared(self, uri: str, size: int | None) -> None:
        """InputRejected before copying when `size` (what the store says; None or negative:
        unknown) does not fit in what is left."""
        if size is not None and size >= 0 and self.used + size > self.limit:
            raise InputRejected(
                f"{self.label} {uri} is {format_size(size)}, more than {self.limit_text}; "
                "refused before downloading"
            )

    def take(self, uri: str, count: int) -> None:
        """Count `count` bytes written; InputRejected as soon as the budget is passed."""
        self.used += count
        if self.used > self.limit:
            raise InputRejected(
                f"{self.label} {uri}: more than {self.limit_text} arrived while downloading; "
                f"stopped after {format_size(self.used)}"
            )

    def counter(self, uri: str) -> Callable[[bytes], None]:
        """A callback for a copy loop: counts each chunk it is given."""
        return lambda chunk: self.take(uri, len(chunk))
