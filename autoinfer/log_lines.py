"""Job log lines, bounded: one line of worker output is at most MAX_LINE_BYTES when stored.

A worker that prints a 100 MB line (a progress bar without newlines, a dumped array) must not
cost 100 MB of memory to read nor one 100 MB row to store. `read_lines` reads a pipe in
pieces of at most the cap, keeps the first MAX_LINE_BYTES of each line and counts the rest;
`cap_line` cuts a line already in memory. A cut line ends with `… [cut: N bytes]`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import BinaryIO

#: The most bytes (UTF-8) of one log line that are kept.
MAX_LINE_BYTES = 16 * 1024
_MARKED = re.compile(r"… \[cut: \d+ bytes\]\n?$")


def cut_marker(dropped: int) -> str:
    return f"… [cut: {dropped} bytes]"


def cap_line(line: str, limit: int = MAX_LINE_BYTES) -> str:
    """`line` if it is at most `limit` bytes in UTF-8, else its first `limit` bytes (whole
    characters) and the cut marker."""
    if len(line) <= limit // 4:  # fast path: no character is more than 4 bytes
        return line
    encoded = line.encode("utf-8", errors="surrogatepass")
    if len(encoded) <= limit or (len(encoded) <= limit + 64 and _MARKED.search(line)):
        return line  # short enough, or cut already (by `read_lines`)
    kept = encoded[:limit].decode("utf-8", errors="ignore")
    return kept + cut_marker(len(encoded) - len(kept.encode("utf-8", errors="surrogatepass")))


def read_lines(pipe: BinaryIO, limit: int = MAX_LINE_BYTES) -> Iterator[str]:
    """The lines of `pipe` (decoded, invalid UTF-8 replaced), each at most `limit` bytes plus
    the cut marker; never holds more than `limit` bytes of one line in memory."""
    while True:
        raw = pipe.readline(limit + 1)
        if not raw:
            return
        if len(raw) <= limit or raw.endswith(b"\n"):
            yield raw.decode("utf-8", errors="replace")
            continue
        dropped = len(raw) - limit
        kept = raw[:limit]
        while True:  # skip the rest of the line, counting it
            rest = pipe.readline(limit)
            if not rest:
                break
            if rest.endswith(b"\n"):
                dropped += len(rest) - 1
                break
            dropped += len(rest)
        yield kept.decode("utf-8", errors="replace") + cut_marker(dropped) + "\n"
