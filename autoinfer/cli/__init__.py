"""The `autoinfer` command line: thin, it talks to the service over HTTP through the SDK."""

from __future__ import annotations

import typer

from autoinfer.cli import (
    demo,
    doctor,
    events,
    items,
    jobs,
    keys,
    migrate,
    notifications,
    push,
    secrets,
    serve,
    status,
)

app = typer.Typer(
    help="autoinfer: new data in a bucket becomes predictions next to it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
jobs.app.command("items")(items.items)
app.add_typer(jobs.app, name="jobs")
app.add_typer(events.events_app, name="events")
app.add_typer(events.triggers_app, name="triggers")
app.add_typer(keys.app, name="keys")
app.add_typer(secrets.app, name="secrets")
app.add_typer(notifications.app, name="notifications")
app.command("serve")(serve.serve)
app.command("demo")(demo.demo)
app.command("push")(push.push)
app.command("status")(status.status)
app.command("doctor")(doctor.doctor)
app.command("migrate")(migrate.migrate)

__all__ = ["app"]
