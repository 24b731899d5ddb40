"""A job's log as the runner writes it: lines buffered and stored in small batches, redacted
and capped per line, flushed with the job's next status change when one comes first."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime

from autoinfer.db import utcnow
from autoinfer.log_lines import cap_line
from autoinfer.runner.context import JobReporter

LOG_FLUSH_S = 0.5  # buffered log lines reach the store at least this often


class JobLog:
    """Buffers a job's log lines and writes them to the store in small batches: at 50 lines,
    or when a line comes LOG_FLUSH_S after the last write, or at `flush_if_due`, or with the
    job's next status change (`flush_with`)."""

    def __init__(self, jobs: JobReporter, job_id: str, redact: Callable[[str], str] = str) -> None:
        self._jobs, self._job_id, self._redact = jobs, job_id, redact
        self._buffer: list[tuple[datetime, str, str]] = []
        self._lock = threading.Lock()
        self._flushing = threading.Lock()  # one flush at a time, so lines stay in order
        self._last_flush = time.monotonic()

    def write(self, stream: str, line: str, *, soon: bool = False) -> None:
        """Buffer a line; `soon`: a status change follows within milliseconds and stores it,
        so a long quiet spell before it is no reason to write it alone."""
        with self._lock:
            text = cap_line(self._redact(line.rstrip("\r\n")))  # one row stays bounded
            self._buffer.append((utcnow(), stream, text))
            due = len(self._buffer) >= 50 or (
                not soon and time.monotonic() - self._last_flush > LOG_FLUSH_S
            )
        if due:
            self.flush()

    def system(self, message: str, *, soon: bool = False) -> None:
        self.write("system", message, soon=soon)

    def flush_if_due(self) -> None:
        """Write lines that have waited LOG_FLUSH_S (a process that went quiet after them)."""
        with self._lock:
            due = bool(self._buffer) and time.monotonic() - self._last_flush > LOG_FLUSH_S
        if due:
            self.flush()

    def flush(self) -> None:
        self.flush_with(lambda lines: self._jobs.append_log(self._job_id, lines))

    def flush_with(self, write: Callable[[list[tuple[datetime, str, str]]], None]) -> None:
        """Hand the buffered lines to `write` (which stores them, possibly along with other
        writes); if it raises, the lines stay buffered, ahead of newer ones."""
        with self._flushing:
            with self._lock:
                lines, self._buffer = self._buffer, []
                self._last_flush = time.monotonic()
            try:
                write(lines)
            except BaseException:
                with self._lock:
                    self._buffer[:0] = lines
                raise
