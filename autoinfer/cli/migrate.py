"""`autoinfer migrate`: bring the database to the newest schema, and say from where to where.

`autoinfer serve` does the same at start (`autoinfer.migrations.upgrade_schema`); this runs it
alone, e.g. once before rolling out a new release to several replicas.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy import make_url
from sqlalchemy.exc import SQLAlchemyError

from autoinfer.cli.client import console, errors, one_line_errors
from autoinfer.cli.text import safe_text
from autoinfer.config import load_config


@one_line_errors
def migrate(
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", help="autoinfer.yaml (default: ./autoinfer.yaml if present)."
        ),
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Where the SQLite database lives.")
    ] = None,
) -> None:
    """Upgrade the database schema to the newest revision (serve does this at start)."""
    from autoinfer.db import Database, default_url
    from autoinfer.file_modes import private_file, secure_data_dir
    from autoinfer.migrations import upgrade_schema

    if config_file is None and Path("autoinfer.yaml").is_file():
        config_file = Path("autoinfer.yaml")
    config = load_config(config_file)
    if data_dir is not None:
        config.data_dir = data_dir.resolve()
    url = config.database_url or default_url(config.data_path)
    shown = safe_text(make_url(url).render_as_string(hide_password=True))
    if config.database_url is None:  # as serve makes them: 0711 folder, 0600 database
        secure_data_dir(config.data_path)
        private_file(config.data_path / "autoinfer.db")
    database = Database(url, upgrade=False)
    try:
        done = upgrade_schema(database.engine)
    except SQLAlchemyError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        errors.print(
            f"[red]error:[/red] database {shown}: {safe_text(first)}",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1) from None
    finally:
        database.dispose()
    if done.stamped:
        start = f"none (made before migrations: recognised as {done.stamped})"
    else:
        start = done.before or "empty"
    verdict = "upgraded" if done.changed else "already at head"
    console.print(
        f"database {shown}: {start} → {done.after} (head), {verdict}",
        highlight=False,
        soft_wrap=True,
    )
