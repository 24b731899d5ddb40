"""Untrusted text made safe to show in a terminal through rich.

Object keys, job names, failure reasons and log lines come from whoever uploads data or runs
a job. Shown as they are, `[/x]` is rich markup (a MarkupError, or styling that was never
meant), and control or bidi characters act on the terminal (`autoinfer.untrusted_text`).
`safe_text` is what every CLI command passes such values through before printing them.
"""

from __future__ import annotations

from typing import Any

from rich.markup import escape

from autoinfer.untrusted_text import neutralise

__all__ = ["neutralise", "safe_text"]


def safe_text(value: Any) -> str:
    """`value` ready for rich: control and bidi characters made visible, markup escaped."""
    return escape(neutralise(value))
