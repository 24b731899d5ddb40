"""Per-item results: each input item's outcome recorded with the job, paged through the API
and the CLI, counted on the job record, and failures listed in the output's errors.json."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import SEED_TRUTH, SEED_ZIP, RunningService

BROKEN = {
    "broken/not-an-image.jpg": b"this is text, not a JPEG",
    "broken/empty.png": b"",
    "truncated.JPEG": None,  # the first 600 bytes of a real JPEG
}


def _mixed_zip(path: Path) -> Path:
    """The five seed images and three files that cannot be decoded."""
    with zipfile.ZipFile(SEED_ZIP) as seed, zipfile.ZipFile(path, "w") as mixed:
        first = seed.namelist()[0]
        for name in seed.namelist():
            mixed.writestr(name, seed.read(name))
        for name, content in BROKEN.items():
            mixed.writestr(name, content if content is not None else seed.read(first)[:600])
    return path


def _items(running: RunningService, job_id: str, **params: Any) -> dict[str, Any]:
    response = httpx.get(
        f"{running.url}/v1/jobs/{job_id}/items", params=params, headers=running.headers
    )
    response.raise_for_status()
    return response.json()


def test_a_job_over_good_and_broken_files_lists_exactly_the_broken_ones_as_errors(
    start_service: Callable[..., RunningService], tmp_path: Path
) -> None:
    running = start_service()
    spec = {
        "name": "mixed",
        "model": {"source_type": "builtin", "source_uri": "efficientnet_lite0"},
        "data": {
            "input_uri": str(_mixed_zip(tmp_path / "mixed.zip")),
            "output_uri": str(tmp_path / "out"),
        },
    }
    job = running.client().jobs.create_from_spec(spec).wait_for("finished", timeout=180)
    assert job.dict["items"] == {"ok": 5, "error": 3}

    errors = _items(running, job.id, status="error")
    assert errors["total"] == 3
    assert sorted(item["file"] for item in errors["items"]) == sorted(BROKEN)
    for item in errors["items"]:
        assert item["status"] == "error" and item["error"] and item["top"] is None

    ok = _items(running, job.id, status="ok")
    assert ok["total"] == 5 and {item["file"] for item in ok["items"]} == set(SEED_TRUTH)
    for item in ok["items"]:
        assert set(item["top"]) == {"id", "name", "confidence"}
        assert item["error"] is None
    page = _items(running, job.id, limit=3, offset=6)
    assert page["total"] == 8 and len(page["items"]) == 2

    with zipfile.ZipFile(tmp_path / "out" / "mixed.zip") as result:
        listed = json.loads(result.read("errors.json"))
    assert sorted(entry["file"] for entry in listed) == sorted(BROKEN)
    by_file = {item["file"]: item["error"] for item in errors["items"]}
    assert all(entry["error"] == by_file[entry["file"]] for entry in listed)

    cli = subprocess.run(
        [sys.executable, "-m", "autoinfer.cli", "jobs", "items", job.id, "--errors", "--json"],
        env=running.cli_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    shown = json.loads(cli.stdout)
    assert shown["total"] == 3 and sorted(i["file"] for i in shown["items"]) == sorted(BROKEN)


def test_a_job_whose_images_all_decode_has_no_errors_json(
    start_service: Callable[..., RunningService], tmp_path: Path
) -> None:
    running = start_service()
    spec = {
        "name": "clean",
        "model": {"source_type": "builtin", "source_uri": "efficientnet_lite0"},
        "data": {"input_uri": str(SEED_ZIP), "output_uri": str(tmp_path / "out")},
    }
    job = running.client().jobs.create_from_spec(spec).wait_for("finished", timeout=180)
    assert job.dict["items"] == {"ok": 5, "error": 0}
    with zipfile.ZipFile(tmp_path / "out" / "clean.zip") as result:
        assert "errors.json" not in result.namelist()
    assert _items(running, job.id, status="error") == {"items": [], "total": 0}


def _model(folder: Path, script: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "predict.py").write_text(textwrap.dedent(script))
    return folder


def _worker_spec(name: str, model: Path, tmp_path: Path) -> dict[str, Any]:
    return {
        "name": name,
        "model": {"source_type": "local", "source_uri": str(model)},
        "workers": ["python predict.py"],
        "data": {"input_uri": str(SEED_ZIP), "output_uri": str(tmp_path / "out")},
    }


def test_a_worker_job_reports_what_its_items_json_says(
    start_service: Callable[..., RunningService], tmp_path: Path
) -> None:
    model = _model(
        tmp_path / "model",
        """
        import json, os
        from pathlib import Path

        files = sorted(p.name for p in Path(os.environ["AUTOINFER_DATA_PATH"]).iterdir())
        items = [{"file": f, "status": "ok"} for f in files[1:]]
        items.append({"file": files[0], "status": "error", "error": "too blurry"})
        Path(os.environ["AUTOINFER_OUTPUT_PATH"], "items.json").write_text(json.dumps(items))
        """,
    )
    running = start_service()
    job = running.client().jobs.create_from_spec(_worker_spec("told", model, tmp_path))
    job = job.wait_for("finished", timeout=120)
    assert job.dict["items"] == {"ok": 4, "error": 1}
    errors = _items(running, job.id, status="error")["items"]
    assert [(e["file"], e["error"]) for e in errors] == [(min(SEED_TRUTH), "too blurry")]
    with zipfile.ZipFile(tmp_path / "out" / "told.zip") as result:
        assert json.loads(result.read("errors.json")) == [
            {"file": min(SEED_TRUTH), "error": "too blurry"}
        ]


def test_a_failed_worker_job_lists_its_input_files_with_its_reason(
    start_service: Callable[..., RunningService], tmp_path: Path
) -> None:
    model = _model(tmp_path / "model", 'import sys\nsys.exit("model exploded")\n')
    running = start_service()
    job = running.client().jobs.create_from_spec(_worker_spec("exploded", model, tmp_path))
    job = _ended(job)
    assert job.status == "failed"
    assert job.dict["items"] == {"ok": 0, "error": 5}
    errors = _items(running, job.id, status="error")["items"]
    assert {e["file"] for e in errors} == set(SEED_TRUTH)
    assert all(e["error"] == job.reason for e in errors)


def _ended(job: Any, timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while job.refresh().status not in ("finished", "failed", "stopped"):
        assert time.monotonic() < deadline, f"job still {job.status}"
        time.sleep(0.1)
    return job
