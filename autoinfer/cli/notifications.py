"""`autoinfer notifications list|redeliver|new-secret`."""

from __future__ import annotations

import base64
import secrets

import typer
from rich.table import Table
from rich.text import Text

from autoinfer.cli.client import (
    JsonOption,
    KeyOption,
    UrlOption,
    console,
    make_client,
    one_line_errors,
    print_json,
)
from autoinfer.cli.text import neutralise

app = typer.Typer(
    help="Completion notifications (webhooks, SQS) and their delivery.", no_args_is_help=True
)

STATUS_COLOURS = {"pending": "yellow", "delivered": "green", "failed": "red"}


@app.command("list")
@one_line_errors
def list_notifications(
    status: str = typer.Option(None, "--status", "-s", help="pending, delivered or failed."),
    job: str = typer.Option(None, "--job", help="Only this job's notifications (job id)."),
    limit: int = typer.Option(50, "--limit"),
    as_json: bool = JsonOption,
    url: str = UrlOption,
    key: str = KeyOption,
) -> None:
    """Recent notifications, newest first, with their delivery state."""
    notifications = make_client(url, key).notifications.list(status=status, job_id=job, limit=limit)
    if as_json:
        print_json(notifications)
        return
    table = Table(
        "id", "created", "target", "event", "job", "status", "attempts", "next / last error"
    )
    for item in notifications:
        colour = STATUS_COLOURS.get(item["status"], "white")
        detail = item.get("last_error") or ""
        if item["status"] == "pending" and item.get("next_attempt_at"):
            detail = f"next {str(item['next_attempt_at'])[11:19]}" + (
                f" · {detail}" if detail else ""
            )
        table.add_row(
            str(item["id"]),
            str(item["created_at"])[:19].replace("T", " "),
            Text(neutralise(item["target"])),
            Text(neutralise(item["event_type"])),
            Text(neutralise(item["job_id"][:12])),
            Text(neutralise(item["status"]), style=colour),
            str(item["attempts"]),
            Text(neutralise(detail)[:80]),
        )
    console.print(table)


@app.command("redeliver")
@one_line_errors
def redeliver(
    notification_id: int = typer.Argument(..., help="The notification's id (from `list`)."),
    as_json: bool = JsonOption,
    url: str = UrlOption,
    key: str = KeyOption,
) -> None:
    """Send a notification again now, with the same webhook-id."""
    item = make_client(url, key).notifications.redeliver(notification_id)
    if as_json:
        print_json(item)
        return
    console.print(
        Text(
            neutralise(
                f"notification {item['id']} ({item['event_type']} of job {item['job_id'][:12]}) "
                f"queued for redelivery to {item['target']}"
            )
        )
    )


@app.command("new-secret")
def new_secret() -> None:
    """Print a new random webhook signing secret (whsec_…) for a notification's `secret`."""
    print("whsec_" + base64.b64encode(secrets.token_bytes(32)).decode())
