"""Resume instead of restart: a built-in model job created through the API (one attempt),
the service SIGKILLed past 40 % and started again. The job finishes, its one attempt is not
spent on the crash, the restarted process classifies only what was left, and the output is
the uninterrupted run's."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.service_harness import ServiceProcess, jpeg_bytes

IMAGES = 800
ENDED = ("finished", "failed", "stopped")


def spec(name: str, images: Path, output: Path) -> dict[str, Any]:
    return {
        "name": name,
        "model": {"source_type": "builtin", "source_uri": "efficientnet_lite0"},
        "data": {"input_uri": str(images), "output_uri": str(output)},
    }


def contents(archive: Path) -> dict[str, bytes]:
    """The zip's files, the manifest without its creation time."""
    with zipfile.ZipFile(archive) as opened:
        found = {name: opened.read(name) for name in opened.namelist()}
    manifest = json.loads(found.pop("manifest.json"))
    manifest.pop("created")
    found["manifest.json"] = json.dumps(manifest).encode()
    return found


def classified_by_this_process(service: ServiceProcess) -> int:
    metrics = httpx.get(f"{service.url}/metrics", timeout=30).text
    [line] = [m for m in metrics.splitlines() if m.startswith("autoinfer_images_classified_total ")]
    return int(float(line.split()[1]))


def wait_job(
    service: ServiceProcess, job_id: str, done: Callable[[dict[str, Any]], bool], what: str
) -> dict[str, Any]:
    found: dict[str, Any] = {}

    def check() -> bool:
        found.update(service.get(f"/v1/jobs/{job_id}"))
        return done(found)

    service.wait_for(check, 120, what, interval=0.05)
    return found


@pytest.mark.slow
def test_a_job_killed_past_40_percent_resumes_and_writes_the_uninterrupted_result(
    serve: Callable[..., ServiceProcess], tmp_path: Path
) -> None:
    images = tmp_path / "buckets" / "data" / "images"  # local paths lie in a store's folder
    images.mkdir(parents=True)
    for index in range(IMAGES):
        (images / f"img-{index:04d}.jpg").write_bytes(jpeg_bytes(index, size=48))
    service = serve(triggers=[])

    reference = service.post(
        "/v1/jobs", spec("photos", images, tmp_path / "buckets" / "out" / "reference")
    )
    done = wait_job(service, reference["id"], lambda j: j["status"] in ENDED, "the reference run")
    assert done["status"] == "finished", done["reason"]

    job = service.post("/v1/jobs", spec("photos", images, tmp_path / "buckets" / "out" / "resumed"))
    assert job["max_attempts"] == 1  # an API job: one attempt
    seen = wait_job(
        service,
        job["id"],
        lambda j: j["status"] in ENDED or (j.get("progress") or {}).get("done", 0) >= 0.4 * IMAGES,
        "40 % of the images",
    )
    assert seen["status"] == "running", f"the job ended before the kill: {seen['status']}"
    service.kill()

    service.start()
    ended = wait_job(service, job["id"], lambda j: j["status"] in ENDED, "the job to end")
    assert ended["status"] == "finished", ended["reason"]
    assert ended["attempt"] == 1  # the crash did not spend the job's only attempt
    lost = [t for t in ended["transitions"] if "infrastructure retry 1 of" in (t["reason"] or "")]
    assert len(lost) == 1
    log = [line["line"] for line in service.get(f"/v1/jobs/{job['id']}/logs")["lines"]]
    [resumed] = [line for line in log if line.startswith("resumed: ")]
    done = int(resumed.split()[1].replace(",", ""))
    assert (
        resumed == f"resumed: {done:,} of {IMAGES:,} images already done" and done >= 0.4 * IMAGES
    )
    again = classified_by_this_process(service)
    print(f"{resumed}; the restarted process classified {again} of {IMAGES}")
    assert again <= 0.7 * IMAGES

    uninterrupted = contents(tmp_path / "buckets" / "out" / "reference" / "photos.zip")
    result = contents(tmp_path / "buckets" / "out" / "resumed" / "photos.zip")
    assert len([name for name in result if name.endswith("_pred.json")]) == IMAGES
    assert result == uninterrupted
    assert not (tmp_path / "service" / "scratch" / f"{job['id']}.resume").exists()
