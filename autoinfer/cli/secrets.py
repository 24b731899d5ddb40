"""`autoinfer secrets set|list|rm`: encrypted secrets (needs an admin key).

A value is read from a hidden prompt, or from stdin when stdin is not a terminal; never from
an argument, which would leave it in the shell history and the process list.
"""

from __future__ import annotations

import sys

import typer
from rich.table import Table

from autoinfer.cli.client import (
    JsonOption,
    KeyOption,
    UrlOption,
    console,
    make_client,
    one_line_errors,
    print_json,
)
from autoinfer.cli.text import safe_text
from autoinfer.errors import ConfigError

app = typer.Typer(
    help="Secrets, encrypted at rest; jobs and stores use them as secret:NAME.",
    no_args_is_help=True,
)


@app.command("set")
@one_line_errors
def set_secret(
    name: str = typer.Argument(..., help="The secret's name (referenced as secret:NAME)."),
    url: str = UrlOption,
    key: str = KeyOption,
) -> None:
    """Store or replace a secret; the value comes from a hidden prompt or from stdin."""
    value = read_value(name)
    make_client(url, key).secrets.set(name, value)
    console.print(safe_text(f"secret '{name}' set"), highlight=False)


@app.command("list")
@one_line_errors
def list_secrets(as_json: bool = JsonOption, url: str = UrlOption, key: str = KeyOption) -> None:
    """Secret names and when each was last set; never values."""
    secrets = make_client(url, key).secrets.list()
    if as_json:
        print_json(secrets)
        return
    table = Table("name", "updated")
    for item in secrets:
        table.add_row(
            safe_text(item["name"]),
            safe_text(str(item.get("updated_at", ""))[:19].replace("T", " ")),
        )
    console.print(table)


@app.command("rm")
@one_line_errors
def remove_secret(
    name: str = typer.Argument(..., help="The secret's name."),
    url: str = UrlOption,
    key: str = KeyOption,
) -> None:
    """Delete a secret."""
    make_client(url, key).secrets.remove(name)
    console.print(safe_text(f"secret '{name}' removed"), highlight=False)


def read_value(name: str) -> str:
    """The value from a hidden, confirmed prompt on a terminal, else all of stdin (one
    trailing newline dropped); ConfigError if it is empty."""
    if sys.stdin.isatty():
        value = typer.prompt(f"value of {name}", hide_input=True, confirmation_prompt=True)
    else:
        value = sys.stdin.read()
        value = value.removesuffix("\n").removesuffix("\r")
    if not value:
        raise ConfigError(f"secret {name!r}: the value is empty")
    return value
