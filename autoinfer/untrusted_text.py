"""Untrusted text made inert for a terminal: control and bidi characters shown as escapes.

Object keys, job names, reasons and worker output come from whoever uploads data or runs a
job. Printed as they are, an ESC starts a terminal escape sequence (colours, cursor moves,
OSC-8 hyperlinks, window titles), a newline forges a log line, and bidi overrides reorder
what the reader sees. `neutralise` is what the CLI (`autoinfer.cli.text`) and the service's
text log pass such values through.
"""

from __future__ import annotations

import re
from typing import Any

# C0 controls except tab, DEL, C1 controls, the bidi embeddings/overrides/isolates and the
# invisible direction marks.
_UNSAFE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def neutralise(value: Any) -> str:
    """`value` as text with every control and bidi character shown as a visible escape
    (`\\x1b`, `\\u202e`) instead of acting on the terminal."""
    text = "" if value is None else str(value)
    return _UNSAFE.sub(_visible, text)


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group(0))
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
