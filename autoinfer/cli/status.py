"""`autoinfer status`: the service at a glance (health, sources, triggers, queue, workers)."""

from __future__ import annotations

from typing import Any

import httpx
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
from autoinfer.disk_usage import format_bytes
from autoinfer.errors import AuthError, AutoInferError, Forbidden


def fetch_status(url: str | None, key: str | None) -> dict[str, Any]:
    """`GET /v1/status` of the service at `url` (key as the other commands find it)."""
    client = make_client(url, key)
    base, token = client.url, client.key
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.get(f"{base}/v1/status", headers=headers, timeout=15)
    except httpx.TransportError as error:
        raise AutoInferError(f"{base}: cannot reach the autoinfer service: {error}") from None
    if response.status_code >= 400:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text[:200] or response.reason_phrase
        errors = {401: AuthError, 403: Forbidden}
        raise errors.get(response.status_code, AutoInferError)(f"{base}: {message}")
    return response.json()


@one_line_errors
def status(as_json: bool = JsonOption, url: str = UrlOption, key: str = KeyOption) -> None:
    """Show the service's health, sources, triggers, queue and workers."""
    data = fetch_status(url, key)
    if as_json:
        print_json(data)
        return
    queue, executor = data["queue"], data["executor"]
    console.print(
        f"[green]{safe_text(data['status'])}[/green]  "
        + safe_text(
            f"autoinfer {data['version']}  replica {data['replica']}  database {data['database']}"
        ),
        highlight=False,
    )
    sources = ", ".join(s["name"] for s in data["sources"]) or "none (API only)"
    console.print(f"sources: {safe_text(sources)}", highlight=False)
    jobs = queue["jobs"]
    live = {
        k: v for k, v in jobs.items() if v and k not in ("new", "finished", "failed", "stopped")
    }
    console.print(
        f"queue: {queue['new']} job(s) waiting, {queue['inbox_pending']} event(s) to dispatch",
        highlight=False,
    )
    running = ", ".join(f"{v} {k}" for k, v in live.items()) or "nothing running"
    console.print(
        f"jobs: {running}; {jobs.get('finished', 0)} finished, {jobs.get('failed', 0)} failed,"
        f" {jobs.get('stopped', 0)} stopped",
        highlight=False,
    )
    console.print(
        f"executor: {executor.get('running', 0)}/{executor.get('max_jobs', '?')} jobs running"
        + (
            f", {executor['cpus_busy']}/{executor['cpus_total']} cores busy"
            if "cpus_total" in executor
            else ""
        ),
        highlight=False,
    )
    workers = data.get("workers")
    if workers:
        models = safe_text(", ".join(workers.get("models", [])) or "no model loaded")
        console.print(
            f"workers: {workers['workers_busy']} busy, {workers['workers_idle']} idle, "
            f"{workers['workers_starting']} starting ({models}); "
            f"{workers['images_classified']} images classified",
            highlight=False,
        )
    else:
        console.print("workers: none started yet (the first built-in job starts them)")
    disk = data.get("disk")
    if disk:
        warning = "  [red]disk nearly full[/red]" if disk["nearly_full"] else ""
        console.print(
            f"data: {format_bytes(disk['used_bytes'])} in {safe_text(disk['data_dir'])}; disk "
            f"{format_bytes(disk['free_bytes'])} free of {format_bytes(disk['total_bytes'])}"
            + warning,
            highlight=False,
        )
    if data["triggers"]:
        table = Table("trigger", "bucket", "prefix", "suffix", "kind", "matched", "failed")
        for trigger in data["triggers"]:
            failed = trigger["failed"]
            table.add_row(
                *(
                    safe_text(trigger[field])
                    for field in ("name", "bucket", "prefix", "suffix", "kind", "matched")
                ),
                f"[red]{failed}[/red]" if failed else "0",
            )
        console.print(table)
    else:
        console.print("triggers: none")
