"""`autoinfer demo`: the reference workflow end to end on the embedded default, no cloud.

A workspace folder acts as the object store (one sub-folder per bucket); the service runs in
this process with a watch source and a trigger for `incoming/*.zip`; a zip of sample photos is
dropped into `incoming/`; the event creates the job; its predictions are printed.
"""

from __future__ import annotations

import io
import json
import time
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.table import Table

from autoinfer.cli.client import console, one_line_errors
from autoinfer.cli.text import safe_text
from autoinfer.config import Config, ExecutorConfig, SourceConfig, StoreConfig, TriggerConfig
from autoinfer.errors import AutoInferError

BUCKET = "data"


def sample_photos_zip() -> bytes:
    """A zip of scikit-image's sample photos (shipped with the package, nothing downloaded)."""
    from PIL import Image
    from skimage import data

    photos = {
        "cat.jpg": data.chelsea(),
        "coffee.jpg": data.coffee(),
        "rocket.jpg": data.rocket(),
        "astronaut.jpg": data.astronaut(),
        "motorcycle.png": data.stereo_motorcycle()[0],
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, pixels in photos.items():
            encoded = io.BytesIO()
            Image.fromarray(pixels).save(
                encoded, format="PNG" if name.endswith(".png") else "JPEG", quality=92
            )
            archive.writestr(name, encoded.getvalue())
    return buffer.getvalue()


def classify_incoming_trigger() -> TriggerConfig:
    """The reference workflow's trigger: `incoming/*.zip` in bucket `data` → `processed/<name>.zip`."""
    return TriggerConfig(
        name="classify-incoming",
        bucket=BUCKET,
        prefix="incoming/",
        suffix=".zip",
        events=["ObjectCreated:*"],
        job={
            "name": "{key_stem}",
            "model": {"source_type": "builtin", "source_uri": "efficientnet_lite0"},
            "data": {"input_uri": "{uri}", "output_uri": "{bucket_uri}/processed"},
        },
    )


def demo_config(workspace: Path) -> Config:
    return Config(
        data_dir=workspace / ".autoinfer",
        stores={"local": StoreConfig(type="local", root=str(workspace / "buckets"))},
        sources=[SourceConfig(type="watch", store="local", rescan_s=5)],
        triggers=[classify_incoming_trigger()],
        executor=ExecutorConfig(type="local", max_jobs=2, lease_s=15),
    )


@one_line_errors
def demo(
    workspace: Path = typer.Option(
        Path("demo-workspace"), "--workspace", help="Folder for the buckets and the service's data."
    ),
    images: Path = typer.Option(
        None, "--images", help="A zip of images to upload [default: scikit-image sample photos]."
    ),
    timeout: float = typer.Option(600, "--timeout", help="Seconds to wait for the job."),
) -> None:
    """Run the reference workflow: upload → event → trigger → job → predictions."""
    from autoinfer.api.server import BackgroundServer
    from autoinfer.sdk import SyncAutoInfer
    from autoinfer.service import AutoInferService

    workspace = workspace.resolve()
    incoming = workspace / "buckets" / BUCKET / "incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    payload = images.read_bytes() if images else sample_photos_zip()

    service = AutoInferService(demo_config(workspace))
    with BackgroundServer(service) as server:
        console.print(
            f"[bold]autoinfer[/bold] serving on {safe_text(server.url)} (API key in {safe_text(service.api_key_file)})",
            highlight=False,
        )
        console.print(
            safe_text(f"object store: {workspace / 'buckets'}  (bucket '{BUCKET}')"),
            highlight=False,
        )
        name = "images-" + datetime.now(UTC).strftime("%Y-%m-%d_%H-%M-%S")
        partial = incoming / f".{name}.zip.part"
        partial.write_bytes(payload)
        partial.rename(incoming / f"{name}.zip")  # appears complete, as an S3 PUT does
        console.print(
            safe_text(
                f"uploaded s3-style object {BUCKET}/incoming/{name}.zip ({len(payload)} bytes)"
            ),
            highlight=False,
        )

        client = SyncAutoInfer(server.url, service.api_key)
        job = _wait_for_job(client, name, timeout)
        console.print(
            f"event → trigger 'classify-incoming' → job [bold]{safe_text(job.name)}[/bold] ({safe_text(job.id)})",
            highlight=False,
        )
        job = _follow(job, timeout)
        if job.status != "finished":
            raise AutoInferError(f"job {job.name} ended {job.status}: {job.reason}")
        output = workspace / "buckets" / BUCKET / "processed" / f"{name}.zip"
        _print_predictions(output)
        console.print(f"\npredictions archive: [bold]{safe_text(output)}[/bold]", highlight=False)


def _wait_for_job(client, name: str, timeout: float):  # a SyncAutoInfer and its Job
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = client.jobs.list(name=name, limit=1)
        if found:
            return found[0]
        time.sleep(0.2)
    raise AutoInferError(
        f"no job was created for {name}.zip within {timeout} s; see `autoinfer events list`"
    )


def _follow(job, timeout: float):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        job.refresh()
        progress = job.progress
        shown = (job.status, progress["done"] if progress else None)
        if shown != last:
            extra = f" {progress['done']}/{progress['total']} images" if progress else ""
            console.print(safe_text(f"  {job.status}{extra}"), highlight=False)
            last = shown
        if job.status in ("finished", "failed", "stopped"):
            return job
        time.sleep(0.2)
    raise AutoInferError(f"job {job.name} did not finish within {timeout} s (status {job.status})")


def _print_predictions(archive_path: Path) -> None:
    table = Table("image", "top class", "confidence", "runners-up")
    with zipfile.ZipFile(archive_path) as archive:
        for member in sorted(n for n in archive.namelist() if n.endswith("_pred.json")):
            prediction = json.loads(archive.read(member))
            if "error" in prediction:
                table.add_row(
                    safe_text(prediction["file"]),
                    "[red]error[/red]",
                    "",
                    safe_text(prediction["error"]),
                )
                continue
            best, *rest = prediction["classes"]
            table.add_row(
                safe_text(prediction["file"]),
                safe_text(f"{best['name']} ({best['id']})"),
                f"{best['confidence']:.3f}",
                safe_text(", ".join(f"{c['name']} {c['confidence']:.2f}" for c in rest[:2])),
            )
    console.print(table)
