"""One attempt's per-item results, as the runner collects them: recorded in batches while a
built-in model classifies, or, for worker commands, the input files with the job's outcome
(unless the model wrote an `items.json`); an `errors.json` in the output when any item failed.

`items.json`, written by a model into its output folder, is a JSON list of
`{"file": "<path below the data folder>", "status": "ok"|"error", "error": "<reason>"}`.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from pydantic import TypeAdapter, ValidationError

from autoinfer.jobs.items import ItemBatch, ItemRecord, item_from_prediction

ITEMS_FILE = "items.json"
ERRORS_FILE = "errors.json"
MAX_ITEMS_FILE_BYTES = 64 * 1024**2
FLUSH_ITEMS = 500  # a batch of results is written once this many wait ...
FLUSH_S = 2.0  # ... or once the oldest of them has waited this long

_ITEM_LIST = TypeAdapter(list[ItemRecord])


class ItemSink(Protocol):
    """Where item results go (`autoinfer.jobs.items.JobItems`)."""

    def record(
        self, job_id: str, items: Sequence[ItemRecord], *, replace: bool = False
    ) -> None: ...

    def clear(self, job_id: str) -> None: ...


class AttemptItems:
    """The item results of one attempt of one job."""

    def __init__(self, sink: ItemSink | None, job_id: str, log: Callable[[str], None]) -> None:
        self._sink, self._job_id, self._log = sink, job_id, log
        self._buffer: list[ItemRecord] = []
        self._errors: list[dict[str, str]] = []
        self._oldest_at = time.monotonic()
        self._lock = threading.Lock()
        self._replace = False  # the next write first forgets the earlier attempts' items

    def start(self) -> None:
        """A new attempt records its items afresh: the earlier attempts' items go with its
        first write (one transaction; a short job's only one, at `finish`)."""
        with self._lock:
            self._replace = True

    # --- built-in models: results as the predictor pool hands them back -------------------

    def add_predictions(self, predictions: Sequence[Mapping[str, Any]]) -> None:
        """The pool's callback: prediction records (`{"file", "classes"|"error"}`) of a batch."""
        items = [item_from_prediction(prediction) for prediction in predictions]
        with self._lock:
            if not self._buffer:  # the oldest waiting result arrives now
                self._oldest_at = time.monotonic()
            self._buffer.extend(items)
            self._errors.extend(
                {"file": item.file, "error": item.error or ""} for item in items if item.error
            )
            due = len(self._buffer) >= FLUSH_ITEMS or time.monotonic() - self._oldest_at > FLUSH_S
        if due:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            batch, self._buffer = self._buffer, []
            replace, self._replace = self._replace, False
            self._oldest_at = time.monotonic()
        if (batch or replace) and self._sink is not None:
            self._sink.record(self._job_id, batch, replace=replace)

    def settle(self) -> None:
        """A failed attempt: store what it recorded so far; a failed write is logged, not
        raised (the failure being recorded matters more)."""
        try:
            self.flush()
        except Exception as error:  # noqa: BLE001 - the job's failure must still be stored
            self._log(f"item results not stored: {type(error).__name__}: {error}")

    def finish(self, output_dir: Path, *, store: bool = True) -> None:
        """Write what is left (`store=False`: keep it for `pending`, to be stored with the
        job's next status change), and `errors.json` into the output if any item failed."""
        if store:
            self.flush()
        if self._errors:
            write_errors_file(output_dir, self._errors)

    def pending(self) -> ItemBatch | None:
        """What waits to be stored, to go into the transaction of a status change (then
        `stored`); None: nothing, or no sink."""
        with self._lock:
            if self._sink is None or not (self._buffer or self._replace):
                return None
            return self._replace, list(self._buffer)

    def stored(self, batch: ItemBatch | None) -> None:
        """`pending`'s `batch` was committed."""
        if batch is not None:
            with self._lock:
                del self._buffer[: len(batch[1])]
                self._replace = self._replace and not batch[0]

    # --- worker commands ----------------------------------------------------------------

    def finish_worker(self, data_dir: Path, output_dir: Path) -> None:
        """A worker job that succeeded: its `items.json` if it wrote one, else every input
        file ok; `errors.json` if any item failed (and the model wrote none itself)."""
        items = self._read_items_file(output_dir / ITEMS_FILE)
        if items is None:
            items = [ItemRecord(file=file, status="ok") for file in input_files(data_dir)]
        self._record(items)
        errors = [
            {"file": item.file, "error": item.error or ""}
            for item in items
            if item.error or item.status == "error"
        ]
        # lexists: a link the model left there (to anywhere) is not written through either.
        if errors and not os.path.lexists(output_dir / ERRORS_FILE):
            write_errors_file(output_dir, errors)

    def fail_worker(self, data_dir: Path, reason: str) -> None:
        """A worker job's attempt failed: each input file ends with the job's reason."""
        self._record(
            [ItemRecord(file=f, status="error", error=reason) for f in input_files(data_dir)]
        )

    def _record(self, items: Sequence[ItemRecord]) -> None:
        if self._sink is not None and items:
            self._sink.record(self._job_id, items, replace=True)

    def _read_items_file(self, path: Path) -> list[ItemRecord] | None:
        if path.is_symlink():  # the service must not read, and echo, what the model cannot
            self._log(f"{ITEMS_FILE} ignored: it is a link; outputs must be plain files")
            return None
        if not path.is_file():
            return None
        try:
            if path.stat().st_size > MAX_ITEMS_FILE_BYTES:
                raise ValueError(f"larger than {MAX_ITEMS_FILE_BYTES} bytes")
            return _ITEM_LIST.validate_json(_read_no_follow(path))
        except (OSError, ValueError, ValidationError) as error:
            detail = " ".join(str(error).split())[:300]
            self._log(
                f"{ITEMS_FILE} ignored (expected a list of {{file, status, error}}): {detail}"
            )
            return None


def input_files(data_dir: Path) -> list[str]:
    """The files below `data_dir`, relative and sorted (a worker job's items)."""
    if not data_dir.is_dir():
        return []
    return sorted(p.relative_to(data_dir).as_posix() for p in data_dir.rglob("*") if p.is_file())


def write_errors_file(output_dir: Path, errors: Sequence[Mapping[str, str]]) -> Path:
    """`errors.json`: `[{"file": ..., "error": ...}, ...]` in the order the items came. Never
    through a link (model code may have left one to a file of the host)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / ERRORS_FILE
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
    with os.fdopen(os.open(path, flags, 0o644), "w") as handle:
        handle.write(json.dumps(list(errors), indent=1) + "\n")
    return path


def _read_no_follow(path: Path) -> bytes:
    with os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb") as handle:
        return handle.read()
