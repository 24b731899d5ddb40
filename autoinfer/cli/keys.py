"""`autoinfer keys create|list|revoke`: API keys (needs an admin key)."""

from __future__ import annotations

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
from autoinfer.cli.text import neutralise, safe_text

app = typer.Typer(
    help="API keys and their roles (read, submit, code, admin).", no_args_is_help=True
)


@app.command("create")
@one_line_errors
def create_key(
    name: str = typer.Option(..., "--name", help="A name to list and revoke the key by."),
    role: str = typer.Option(
        "read", "--role", help="read (list and view), submit (also jobs and events), admin."
    ),
    as_json: bool = JsonOption,
    url: str = UrlOption,
    key: str = KeyOption,
) -> None:
    """Create a key and print it once: only its hash is kept, it cannot be shown again."""
    created = make_client(url, key).keys.create(name, role)
    if as_json:
        print_json(created)
        return
    typer.echo(
        f"created key '{neutralise(created['name'])}' ({created['id']}, role {created['role']}); "
        "store it now, it will not be shown again:",
        err=True,
    )
    typer.echo(created["key"])


@app.command("list")
@one_line_errors
def list_keys(as_json: bool = JsonOption, url: str = UrlOption, key: str = KeyOption) -> None:
    """Every key with its role and times; never the keys themselves."""
    keys = make_client(url, key).keys.list()
    if as_json:
        print_json(keys)
        return
    table = Table("id", "name", "role", "created", "last used", "revoked")
    for item in keys:
        table.add_row(
            *(
                safe_text(cell)
                for cell in (
                    item["id"],
                    item["name"],
                    item["role"],
                    _time(item.get("created_at")),
                    _time(item.get("last_used_at")),
                    _time(item.get("revoked_at")),
                )
            )
        )
    console.print(table)


@app.command("revoke")
@one_line_errors
def revoke_key(
    ref: str = typer.Argument(..., metavar="NAME|ID", help="The key's name or id."),
    url: str = UrlOption,
    key: str = KeyOption,
) -> None:
    """Revoke a key: requests with it get 401 from now on."""
    revoked = make_client(url, key).keys.revoke(ref)
    console.print(safe_text(f"revoked key '{revoked['name']}' ({revoked['id']})"), highlight=False)


def _time(value: str | None) -> str:
    return str(value or "")[:19].replace("T", " ")
