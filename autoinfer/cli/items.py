"""`autoinfer jobs items <job> [--errors]`: a job's per-item results."""

from __future__ import annotations

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
from autoinfer.cli.jobs import _find
from autoinfer.cli.text import neutralise

PAGE = 1000


@one_line_errors
def items(
    ref: str = typer.Argument(..., help="Job id or name."),
    errors_only: bool = typer.Option(False, "--errors", help="Only the items that failed."),
    limit: int = typer.Option(None, "--limit", help="At most this many items [default: all]."),
    as_json: bool = JsonOption,
    url: str = UrlOption,
    key: str = KeyOption,
) -> None:
    """Each input item of a job with its outcome: the top class, or why it failed."""
    job = _find(make_client(url, key), ref)
    status = "error" if errors_only else None
    found: list[dict] = []
    total = 0
    while limit is None or len(found) < limit:
        size = PAGE if limit is None else min(PAGE, limit - len(found))
        page = job.items(status=status, limit=size, offset=len(found))
        found.extend(page["items"])
        total = page["total"]
        if not page["items"] or len(found) >= total:
            break
    if as_json:
        print_json({"items": found, "total": total})
        return
    table = Table("file", "status", "top class / error", "confidence")
    for item in found:
        top = item.get("top") or {}
        if item["status"] == "ok":
            detail = Text(neutralise(top.get("name", "")))
            confidence = f"{top['confidence']:.3f}" if "confidence" in top else ""
        else:
            detail, confidence = Text(neutralise(item.get("error") or ""), style="red"), ""
        colour = "green" if item["status"] == "ok" else "red"
        status_text = Text(neutralise(item["status"]), style=colour)
        table.add_row(Text(neutralise(item["file"])), status_text, detail, confidence)
    console.print(table)
    counts = (job.dict.get("items") or {}) if hasattr(job, "dict") else {}
    summary = f"{len(found)} of {total} item(s)"
    if counts:
        summary += f" · job: {counts.get('ok', 0)} ok, {counts.get('error', 0)} error"
    console.print(summary, highlight=False)
