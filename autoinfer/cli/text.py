"""Untrusted text made safe to show in a terminal through rich.

Object keys, job names, failure reasons and log lines come from whoever uploads data or runs
a job. Shown as they are, `[/x]` is rich markup (a MarkupError, or styling that was never
meant), an ESC starts a terminal escape sequence (colours, cursor moves, OSC-8 hyperlinks,
window titles), and bidi overrides reorder what the reader sees. `safe_text` is what every
CLI command passes such values through before printing them.
"""

from __future__ import annotations

import re
from typing import Any

from rich.markup import escape

# C0 controls except tab, DEL, C1 controls, the bidi embeddings/overrides/isolates and the
# invisible direction marks.
_UNSAFE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def neutralise(value: Any) -> str:
    """`value` as text with every control and bidi character shown as a visible escape
    (`\\x1b`, `\\u202e`) instead of acting on the terminal."""
    text = "" if value is None else str(value)
    return _UNSAFE.sub(_visible, text)


def safe_text(value: Any) -> str:
    """`value` ready for rich: control and bidi characters made visible, markup escaped."""
    return escape(neutralise(value))


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group(0))
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
