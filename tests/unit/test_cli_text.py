"""Untrusted text shown by the CLI: markup escaped, control and bidi characters made visible."""

from __future__ import annotations

from rich.console import Console

from autoinfer.cli.text import neutralise, safe_text


def render(markup: str) -> str:
    console = Console(width=200, color_system=None, force_terminal=False)
    with console.capture() as captured:
        console.print(markup, highlight=False)
    return captured.get().rstrip("\n")


def test_markup_in_a_key_is_shown_as_written() -> None:
    assert render(safe_text("incoming/[/x].zip")) == "incoming/[/x].zip"
    assert render(safe_text("[bold]not bold[/bold]")) == "[bold]not bold[/bold]"
    trailing = safe_text("ends with a backslash\\")
    assert render(f"[bold]{trailing}[/bold]") == "ends with a backslash\\"


def test_escape_sequences_and_hyperlinks_never_reach_the_terminal() -> None:
    shown = render(safe_text("a\x1b[31mred\x1b]8;;https://evil.example\x1b\\link\x07\x9b"))
    assert "\x1b" not in shown and "\x07" not in shown and "\x9b" not in shown
    assert shown == "a\\x1b[31mred\\x1b]8;;https://evil.example\\x1b\\link\\x07\\x9b"


def test_bidi_overrides_are_made_visible() -> None:
    assert neutralise("invoice\u202egpj.exe\u2066x\u2069") == "invoice\\u202egpj.exe\\u2066x\\u2069"


def test_tabs_and_ordinary_unicode_are_kept() -> None:
    assert neutralise("été\tphotos") == "été\tphotos"
    assert neutralise(None) == ""
