"""The service's own log: readable text or JSON lines, each carrying the job and event it is about.

Code that works on a job or an event says so once, with `log_context(job_id=..., event_id=...)`
around the work; every record logged inside (in that thread or task) gets `job_id` and
`event_id` attributes, which both formats print. The values live in context variables, so
concurrent jobs in other threads do not mix. `configure_logging` installs one handler on the
root logger and leaves other filters alone (the secret redaction of `autoinfer.secrets` keeps
working: it rewrites records where they are made).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO, Any, Literal

from autoinfer.untrusted_text import neutralise

LogFormat = Literal["text", "json"]
FORMATS: tuple[LogFormat, ...] = ("text", "json")

#: The job and the event the current thread or task works on (None: none).
current_job_id: ContextVar[str | None] = ContextVar("autoinfer_job_id", default=None)
current_event_id: ContextVar[str | None] = ContextVar("autoinfer_event_id", default=None)

#: Loggers that uvicorn gives handlers of its own; they are sent to the root handler instead.
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")
_CONTEXT_FIELDS = ("job_id", "event_id")


@contextmanager
def log_context(*, job_id: str | None = None, event_id: str | int | None = None) -> Iterator[None]:
    """Within the block, log records carry `job_id` / `event_id` (those given; the others
    keep their outer value)."""
    tokens = []
    if job_id is not None:
        tokens.append((current_job_id, current_job_id.set(str(job_id))))
    if event_id is not None:
        tokens.append((current_event_id, current_event_id.set(str(event_id))))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


class ContextFilter(logging.Filter):
    """Sets `record.job_id` and `record.event_id` from the context (None where none applies);
    a value passed with `extra=` wins."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "job_id", None) is None:
            record.job_id = current_job_id.get()
        if getattr(record, "event_id", None) is None:
            record.event_id = current_event_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, job_id and
    event_id when they apply, and the exception's traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in _CONTEXT_FIELDS:
            value = getattr(record, field, None)
            if value is not None:
                entry[field] = str(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """`2026-01-01 10:00:00,123 INFO autoinfer.pipeline: message [job=… event=…]`."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        # Keys and worker text in a message cannot act on the terminal or forge a line.
        line = neutralise(super().formatMessage(record))
        context = [
            f"{field.removesuffix('_id')}={value}"
            for field in _CONTEXT_FIELDS
            if (value := getattr(record, field, None)) is not None
        ]
        return f"{line} [{' '.join(context)}]" if context else line


def make_formatter(log_format: LogFormat) -> logging.Formatter:
    if log_format not in FORMATS:
        raise ValueError(f"log format {log_format!r}: use one of {', '.join(FORMATS)}")
    return JsonFormatter() if log_format == "json" else TextFormatter()


def configure_logging(
    level: str = "info", log_format: LogFormat = "text", stream: IO[str] | None = None
) -> logging.Handler:
    """Send every log record of the process to `stream` (stderr) in `log_format`.

    Replaces the handler an earlier call installed; keeps the root logger's filters.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_autoinfer", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(make_formatter(log_format))
    handler.addFilter(ContextFilter())
    handler._autoinfer = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.captureWarnings(True)  # Python's warnings too, in the same format
    route_uvicorn_logs()
    return handler


def route_uvicorn_logs() -> None:
    """Make uvicorn's loggers write through the root handler (in the same format).

    uvicorn configures its own handlers when its `Config` is created: call this after that.
    """
    for name in UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
