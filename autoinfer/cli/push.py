"""`autoinfer push FILE DEST_URI`: upload a file the way the reference workflow's push script does."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from autoinfer.cli.client import console, errors, one_line_errors
from autoinfer.cli.text import safe_text
from autoinfer.config import load_config
from autoinfer.errors import StorageError
from autoinfer.storage import ObjectInfo, Storage, join_uri, open_registry


def destination_uri(source: Path, dest: str, now: datetime | None = None) -> str:
    """`images.zip` pushed to `.../incoming/` becomes `.../incoming/images-<UTC timestamp>.zip`."""
    if not dest.endswith("/"):
        return dest
    stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%d_%H-%M-%S")
    suffixes = (
        "".join(source.suffixes[-2:]) if source.name.endswith((".tar.gz",)) else source.suffix
    )
    stem = source.name[: len(source.name) - len(suffixes)] if suffixes else source.name
    return join_uri(dest, f"{stem}-{stamp}{suffixes}")


@one_line_errors
def push(
    file: Path = typer.Argument(..., help="The file to upload."),
    dest_uri: str = typer.Argument(
        ..., help="Object URI, or a prefix ending in '/' to name it <stem>-<UTC time>."
    ),
    config_file: Path = typer.Option(
        None, "--config", "-c", help="autoinfer.yaml holding the store settings."
    ),
) -> None:
    """Upload FILE to DEST_URI (a local path, file:// or s3:// URI)."""
    if not file.is_file():
        raise StorageError(f"{file}: no such file")
    if config_file is None and Path("autoinfer.yaml").is_file():
        config_file = Path("autoinfer.yaml")
    config = load_config(config_file)
    target = destination_uri(file, dest_uri)
    storage = open_registry(config).for_uri(target)
    info = upload_with_progress(storage, file, target)
    console.print(safe_text(f"uploaded {file} ({info.size} bytes) to {target}"), highlight=False)


def upload_with_progress(storage: Storage, file: Path, target: str) -> ObjectInfo:
    """Upload, showing a bar of bytes sent on stderr where the backend reports them (S3)."""
    if not storage.reports_progress:
        return storage.upload(file, target)  # a local copy: nothing to wait for
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=errors, transient=True) as bar:
        task = bar.add_task(safe_text(f"uploading {file.name}"), total=file.stat().st_size)
        return storage.upload_with_progress(file, target, lambda sent: bar.advance(task, sent))
