"""The inbox: a durable, deduplicated log of every storage event the service received.

- `store`: `Inbox`, which records each delivery exactly once per idempotency key (a repeat is
  a `duplicate` row pointing at the original), settles events and lists them;
- `records`: the read models (`EventRecord`) and the `Settlement` the pipeline hands back;
- `cursor`: `SourceCursor`, what a watcher or poller has already reported;
- `tables`: the tables behind them, and `Outcome`.
"""

from __future__ import annotations

from autoinfer.inbox.cursor import SeenObject, SourceCursor
from autoinfer.inbox.records import Dispatch, DispatchRecord, EventRecord, Settlement
from autoinfer.inbox.store import EXCERPT_CHARS, Inbox
from autoinfer.inbox.tables import DispatchRow, EventRow, Outcome, SeenObjectRow, SourceCursorRow

__all__ = [
    "EXCERPT_CHARS",
    "Dispatch",
    "DispatchRecord",
    "DispatchRow",
    "EventRecord",
    "EventRow",
    "Inbox",
    "Outcome",
    "SeenObject",
    "SeenObjectRow",
    "Settlement",
    "SourceCursor",
    "SourceCursorRow",
]
