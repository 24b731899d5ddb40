"""`autoinfer jobs create|list|get|logs|stop|wait|retry`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from autoinfer.cli.client import (
    JsonOption,
    KeyOption,
    UrlOption,
    console,
    errors,
    make_client,
    one_line_errors,
    print_json,
)
from autoinfer.cli.text import neutralise, safe_text
from autoinfer.errors import NotFound

app = typer.Typer(help="Create, watch and stop inference jobs.", no_args_is_help=True)

STATUS_COLOURS = {
    "new": "white",
    "waiting for resources": "yellow",
    "waiting for data/model download": "yellow",
    "running": "cyan",
    "uploading": "cyan",
    "finished": "green",
    "failed": "red",
    "stopped": "magenta",
}


def _status(status: str) -> str:
    """A job status in its colour (markup), the status itself escaped."""
    return f"[{STATUS_COLOURS.get(status, 'white')}]{safe_text(status)}[/]"


def _find(client: Any, ref: str) -> Any:
    """A job by id, or else by name (the newest job of that name)."""
    try:
        return client.jobs.get(ref)
    except NotFound:
        named = client.jobs.list(name=ref, limit=1)
        if named:
            return client.jobs.get(named[0].id)  # lists hold summaries; the detail has the spec
        raise NotFound(f"job {ref}: no job has this id or name") from None


@app.command("create")
@one_line_errors
def create(
    name: str = typer.Option(None, "--name", "-n", help="Job name."),
    input_uri: str = typer.Option(
        None, "--input", "-i", help="Input URI: file, archive or folder/prefix."
    ),
    output_uri: str = typer.Option(
        None, "--output", "-o", help="Output URI (folder or s3:// prefix)."
    ),
    model: str = typer.Option(
        "efficientnet_lite0",
        "--model",
        help="Built-in model name, or a model URI with --model-type.",
    ),
    model_type: str = typer.Option(
        "builtin", "--model-type", help="builtin, local, git, aws or http."
    ),
    worker: list[str] = typer.Option([], "--worker", "-w", help="Worker command (repeatable)."),
    no_archive: bool = typer.Option(
        False, "--no-archive", help="Upload files one by one instead of <name>.zip."
    ),
    timeout_s: int = typer.Option(3600, "--timeout", help="Seconds before the job is failed."),
    spec_file: Path = typer.Option(
        None, "--spec", "-f", help="A job spec JSON file (overrides the options)."
    ),
    attach: bool = typer.Option(False, "--attach", "-a", help="Follow the job until it ends."),
    as_json: bool = JsonOption,
    url: str = UrlOption,
    key: str = KeyOption,
) -> None:
    """Create a job from options or from a spec file."""
    client = make_client(url, key)
    if spec_file is not None:
        spec = json.loads(spec_file.read_text())
    else:
        missing = [
            flag
            for flag, value in (("--name", name), ("--input", input_uri), ("--output", output_uri))
            if not value
        ]
        if missing:
            raise typer.BadParameter(f"missing {', '.join(missing)} (or give --spec FILE)")
        spec = {
            "name": name,
            "type": "inference",
            "model": {"source_type": model_type, "source_uri": model},
            "workers": worker,
            "data": {
                "input_uri": input_uri,
                "output_uri": output_uri,
                "output_options": {"archive": not no_archive},
            },
            "timeout_s": timeout_s,
        }
    job = client.jobs.create_from_spec(spec)
    if as_json and not attach:
        print_json(job.dict)
        return
    console.print(
        f"created job [bold]{safe_text(job.name)}[/bold] ({safe_text(job.id)})", highlight=False
    )
    if attach:
        _wait(client, job, "finished", None)


@app.command("list")
@one_line_errors
def list_jobs(
    status: str = typer.Option(None, "--status", "-s", help="Only jobs in this status."),
    limit: int = typer.Option(50, "--limit"),
    as_json: bool = JsonOption,
    url: str = UrlOption,
    key: str = KeyOption,
) -> None:
    """List recent jobs, newest first."""
    jobs = make_client(url, key).jobs.list(status=status, limit=limit)
    if as_json:
        print_json([job.dict for job in jobs])
        return
    table = Table("id", "name", "status", "progress", "attempt", "created", "reason")
    for job in jobs:
        data = job.dict
        progress = data.get("progress")
        table.add_row(
            safe_text(job.id[:12]),
            safe_text(job.name),
            _status(job.status),
            safe_text(f"{progress['done']}/{progress['total']}") if progress else "",
            safe_text(data["attempt"]),
            safe_text(str(data["created_at"])[:19].replace("T", " ")),
            safe_text(neutralise(data.get("reason") or "")[:60]),
        )
    console.print(table)


@app.command("get")
@one_line_errors
def get(
    ref: str = typer.Argument(..., help="Job id or name."),
    as_json: bool = JsonOption,
    url: str = UrlOption,
    key: str = KeyOption,
) -> None:
    """Show one job: spec, status history, result."""
    job = _find(make_client(url, key), ref)
    data = job.dict
    if as_json:
        print_json(data)
        return
    console.print(f"[bold]{safe_text(job.name)}[/bold]  id {safe_text(job.id)}", highlight=False)
    console.print(
        f"status: {_status(job.status)}  attempt {safe_text(data['attempt'])}/{safe_text(data['max_attempts'])}",
        highlight=False,
    )
    if data.get("reason"):
        console.print(f"reason: {safe_text(data['reason'])}", highlight=False)
    if data.get("progress"):
        console.print(
            safe_text(f"progress: {data['progress']['done']}/{data['progress']['total']} images"),
            highlight=False,
        )
    console.print(f"input: {safe_text(data['spec']['data']['input_uri'])}", highlight=False)
    console.print(
        f"output: {safe_text(data.get('output_location') or data['spec']['data']['output_uri'])}",
        highlight=False,
    )
    for line in _resource_lines(data["spec"]):
        console.print(neutralise(line), highlight=False, markup=False)
    for transition in data["transitions"]:
        console.print(
            safe_text(
                f"  {str(transition['at'])[:23]}  {transition['status']}"
                + (f"  ({transition['reason']})" if transition.get("reason") else "")
            ),
            highlight=False,
        )


def _resource_lines(spec: dict) -> list[str]:
    """What the job asked for besides its data: GPUs, trainML's price fields, its environment."""
    resources, environment = spec.get("resources") or {}, spec.get("environment") or {}
    types = [t for t in [resources.get("gpu_type"), *(resources.get("gpu_types") or [])] if t]
    line = f"resources: {resources.get('cpu_count', 1)} cpu, {resources.get('gpu_count', 0)} gpu"
    line += f" ({' or '.join(types)})" if types else ""
    line += f", disk {resources.get('disk_size', 10)} GiB"
    if resources.get("max_price") is not None:
        line += f", max_price {resources['max_price']}"
    if resources.get("preemptible") is not None:
        line += f", preemptible {str(resources['preemptible']).lower()}"
    lines = [line]
    pip = (environment.get("packages") or {}).get("pip") or []
    if environment.get("type") or pip:
        lines.append(
            f"environment: {environment.get('type') or 'default'}"
            + (f", pip: {' '.join(pip)}" if pip else "")
        )
    return lines


@app.command("logs")
@one_line_errors
def logs(
    ref: str = typer.Argument(..., help="Job id or name."),
    follow: bool = typer.Option(
        False, "--follow", "-f", help="Keep printing new lines until the job ends."
    ),
    as_json: bool = JsonOption,
    url: str = UrlOption,
    key: str = KeyOption,
) -> None:
    """Print a job's log (timestamped stdout/stderr of its workers and autoinfer's own lines)."""
    client = make_client(url, key)
    job = _find(client, ref)
    if not follow:
        lines = job.logs()
        if as_json:
            print_json(lines)
            return
        for line in lines:
            _print_line(line)
        return
    import asyncio

    async def stream() -> None:
        async for item in job._target.follow_logs():  # the wrapped job's async iterator
            if "status" in item and "line" not in item:
                if not as_json:
                    console.print(
                        f"[bold]job {safe_text(item['status'])}[/bold]"
                        + (f": {safe_text(item['reason'])}" if item.get("reason") else ""),
                        highlight=False,
                    )
                else:
                    print_json(item)
                return
            if as_json:
                print(json.dumps(item), flush=True)
            else:
                _print_line(item)

    asyncio.run(stream())


def _print_line(line: dict) -> None:
    stamp = safe_text(str(line["at"])[11:23])
    style = {"stderr": "red", "system": "dim"}.get(line["stream"], "")
    text = safe_text(line["line"])
    console.print(
        f"[dim]{stamp}[/dim] [{style}]{text}[/{style}]" if style else f"[dim]{stamp}[/dim] {text}",
        highlight=False,
        soft_wrap=True,
    )


@app.command("stop")
@one_line_errors
def stop(
    ref: str = typer.Argument(..., help="Job id or name."),
    as_json: bool = JsonOption,
    url: str = UrlOption,
    key: str = KeyOption,
) -> None:
    """Stop a job (its processes get SIGTERM, then SIGKILL)."""
    job = _find(make_client(url, key), ref).stop()
    if as_json:
        print_json(job.dict)
    else:
        console.print(
            safe_text(f"stop requested for {job.name} ({job.id}): {job.status}"), highlight=False
        )


@app.command("retry")
@one_line_errors
def retry(
    ref: str = typer.Argument(..., help="Job id or name."),
    url: str = UrlOption,
    key: str = KeyOption,
) -> None:
    """Run a failed or stopped job again."""
    job = _find(make_client(url, key), ref).retry()
    console.print(safe_text(f"{job.name} ({job.id}) queued again"), highlight=False)


@app.command("wait")
@one_line_errors
def wait(
    ref: str = typer.Argument(..., help="Job id or name."),
    status: str = typer.Option("finished", "--status", help="Status to wait for."),
    timeout: float = typer.Option(None, "--timeout", help="Give up after this many seconds."),
    as_json: bool = JsonOption,
    url: str = UrlOption,
    key: str = KeyOption,
) -> None:
    """Wait for a job to reach a status, showing its progress; exit 1 if it ends otherwise."""
    client = make_client(url, key)
    job = _find(client, ref)
    job = _wait(client, job, status, timeout, quiet=as_json)
    if as_json:
        print_json(job.dict)


def _wait(client: Any, job: Any, status: str, timeout: float | None, *, quiet: bool = False) -> Any:
    deadline = None if timeout is None else time.monotonic() + timeout
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=errors, transient=True, disable=quiet) as bar:
        task = bar.add_task(safe_text(f"{job.name}: {job.status}"), total=None)
        while True:
            job.refresh()
            progress = job.progress
            bar.update(
                task,
                description=safe_text(f"{job.name}: {job.status}"),
                completed=progress["done"] if progress else 0,
                total=progress["total"] if progress else None,
            )
            if job.status == status:
                break
            if job.status in ("finished", "failed", "stopped"):
                errors.print(
                    f"[red]job {safe_text(job.name)} ended {safe_text(job.status)}[/red]: {safe_text(job.reason or '')}",
                    highlight=False,
                )
                raise typer.Exit(1)
            if deadline is not None and time.monotonic() > deadline:
                errors.print(
                    f"[red]timed out[/red]: {safe_text(f'job {job.name} is still {job.status}')}",
                    highlight=False,
                )
                raise typer.Exit(2)
            time.sleep(0.5)
    if not quiet:
        console.print(
            f"job [bold]{safe_text(job.name)}[/bold] {safe_text(job.status)}"
            + (f": {safe_text(job.output_location)}" if job.output_location else ""),
            highlight=False,
        )
    return job
