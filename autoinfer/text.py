"""Messages shaped for one line: a reason in a job's record, a log line, an error shown to a user.

Worker output, storage answers and exceptions carry newlines and runs of whitespace; a job's
`reason` or a log line must stay one line and bounded. Every module that shortens such text
calls `one_line` (or `error_line` for an exception), so they all cut it the same way.
"""

from __future__ import annotations

#: The longest `one_line` result unless a caller asks for another.
DEFAULT_LIMIT = 500


def one_line(text: str, limit: int = DEFAULT_LIMIT) -> str:
    """Collapse `text` into a single line of at most `limit` characters (an ellipsis marks a cut)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def error_line(error: BaseException, limit: int = DEFAULT_LIMIT) -> str:
    """`error`'s message as `one_line`, or its type's name when the message is empty."""
    return one_line(str(error), limit) or type(error).__name__
