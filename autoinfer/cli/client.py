"""How CLI commands find the service and its key, and print results or one-line errors."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import typer
from rich.console import Console

from autoinfer.cli.text import safe_text
from autoinfer.errors import AutoInferError
from autoinfer.sdk import DEFAULT_URL, SyncAutoInfer

console = Console()
errors = Console(stderr=True)

UrlOption = typer.Option(
    None, "--url", envvar="AUTOINFER_URL", help="Service URL [default: http://127.0.0.1:8000]"
)
KeyOption = typer.Option(
    None, "--key", envvar="AUTOINFER_KEY", help="API key [default: <data dir>/api_key]"
)
JsonOption = typer.Option(False, "--json", help="Print JSON instead of a table.")

P = ParamSpec("P")
R = TypeVar("R")


def make_client(url: str | None, key: str | None) -> SyncAutoInfer:
    """A client for `url`; without a key, the local service's key file is used if readable."""
    if key is None:
        data_dir = Path(os.environ.get("AUTOINFER_DATA_DIR", ".autoinfer"))
        key_file = data_dir / "api_key"
        if key_file.is_file():
            key = key_file.read_text().strip()
    return SyncAutoInfer(url or DEFAULT_URL, key)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def one_line_errors(function: Callable[P, R]) -> Callable[P, R]:
    """Turn our errors into one red line on stderr and exit code 1, never a traceback."""

    @wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return function(*args, **kwargs)
        except AutoInferError as error:
            errors.print(f"[red]error:[/red] {safe_text(error)}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            raise typer.Exit(130) from None

    return wrapper
