"""Idempotency keys of the jobs a trigger's handler creates: set by the dispatcher around each
handler call, counted per created job, so a redelivered event creates no second job."""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Iterator

#: Set by the trigger dispatcher around a handler call (see `idempotency_scope`): jobs created
#: inside it get an `Idempotency-Key`, so a redelivered event can never create a second job.
idempotency_key: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "autoinfer_idempotency_key", default=None
)


class _CreateCounter:
    """How many jobs the SDK has created in one idempotency scope. Shared, not copied, by the
    copies of the context that async tasks and the synchronous wrapper's loop run in."""

    def __init__(self) -> None:
        self._count = 0
        self._lock = threading.Lock()

    def next(self) -> int:
        with self._lock:
            self._count += 1
            return self._count


_creates: contextvars.ContextVar[_CreateCounter | None] = contextvars.ContextVar(
    "autoinfer_idempotency_creates", default=None
)


@contextlib.contextmanager
def idempotency_scope(key: str) -> Iterator[None]:
    """Within it, the jobs created through the SDK carry `key` (the first), then `key-2`,
    `key-3`, ...: code that runs again in a new scope with the same key (a redelivered event's
    handler) sends the same keys in the same order, so it creates no new job, while each of
    several jobs created in one run is a job of its own."""
    tokens = (idempotency_key.set(key), _creates.set(_CreateCounter()))
    try:
        yield
    finally:
        _creates.reset(tokens[1])
        idempotency_key.reset(tokens[0])


def next_idempotency_key() -> str | None:
    """The `Idempotency-Key` for the next job created in this context: None outside a scope;
    the plain key if it was set without `idempotency_scope` (no counting)."""
    key = idempotency_key.get()
    counter = _creates.get()
    if key is None or counter is None:
        return key
    n = counter.next()
    return key if n == 1 else f"{key}-{n}"
