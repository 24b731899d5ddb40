"""`autoinfer events list|redrive` and `autoinfer triggers list`."""

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
from autoinfer.cli.text import safe_text

events_app = typer.Typer(help="Storage events received by the service.", no_args_is_help=True)
triggers_app = typer.Typer(help="The trigger rules of the service.", no_args_is_help=True)


@events_app.command("list")
@one_line_errors
def list_events(
    outcome: str = typer.Option(
        None, "--outcome", help="matched, duplicate, ignored, rejected, failed, pending"
    ),
    limit: int = typer.Option(50, "--limit"),
    as_json: bool = JsonOption,
    url: str = UrlOption,
    key: str = KeyOption,
) -> None:
    """Recent events with their outcome and the job each started."""
    events = make_client(url, key).events.list(limit=limit, outcome=outcome)
    if as_json:
        print_json(events)
        return
    table = Table("received", "source", "bucket", "key", "event", "outcome", "job / reason")
    for event in events:
        table.add_row(
            *(
                safe_text(cell)
                for cell in (
                    str(event.get("received_at", ""))[:19].replace("T", " "),
                    event.get("source") or "",
                    event.get("bucket") or "",
                    event.get("key") or "",
                    event.get("event_name") or "",
                    event.get("outcome") or "",
                    event.get("job_id") or event.get("reason") or "",
                )
            )
        )
    console.print(table)


@events_app.command("redrive")
@one_line_errors
def redrive(
    trigger: str = typer.Option(..., "--trigger", help="The trigger whose dead letters to re-run."),
    as_json: bool = JsonOption,
    url: str = UrlOption,
    key: str = KeyOption,
) -> None:
    """Re-queue the dead letters of a trigger: its jobs whose last attempt failed.

    List them first with `autoinfer jobs list --status failed` (or
    `GET /v1/jobs?status=failed&source=trigger:NAME`)."""
    result = make_client(url, key).triggers.redrive(trigger)
    if as_json:
        print_json(result)
        return
    requeued = result["requeued"]
    console.print(
        safe_text(f"re-queued {requeued} failed job(s) of trigger {trigger}"), highlight=False
    )


@triggers_app.command("list")
@one_line_errors
def list_triggers(as_json: bool = JsonOption, url: str = UrlOption, key: str = KeyOption) -> None:
    """The trigger rules and how many events each matched."""
    triggers = make_client(url, key).triggers.list()
    if as_json:
        print_json(triggers)
        return
    table = Table("name", "kind", "bucket", "prefix", "suffix", "events", "counts")
    for trigger in triggers:
        counts = ", ".join(f"{k} {v}" for k, v in (trigger.get("counts") or {}).items())
        table.add_row(
            *(
                safe_text(cell)
                for cell in (
                    trigger["name"],
                    trigger.get("kind", ""),
                    trigger["bucket"],
                    trigger.get("prefix", ""),
                    trigger.get("suffix", ""),
                    ", ".join(trigger.get("events", [])),
                    counts,
                )
            )
        )
    console.print(table)
