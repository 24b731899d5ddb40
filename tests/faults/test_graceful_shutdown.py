"""SIGTERM: stop taking work, let running jobs finish within the grace period, hand back the rest."""

from __future__ import annotations

import signal
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.service_harness import ServiceProcess

# A worker that announces it started, then works for a while unless an earlier run of it was
# handed back (then it finishes at once), and writes its output.
WORKER = """\
import os, pathlib, time
marks = pathlib.Path(os.environ["MARKS"])
runs = len(list(marks.glob("run-*")))
(marks / f"run-{runs + 1}").touch()
if runs == 0:
    time.sleep(float(os.environ["WORK_S"]))
out = pathlib.Path(os.environ["AUTOINFER_OUTPUT_PATH"]) / "result.txt"
out.write_text(f"done in run {runs + 1}\\n")
"""

# The worker leaves a mark per attempt in a host folder: outside what a sandbox would show it.
UNSANDBOXED = "none"


def slow_job(tmp_path: Path, work_s: float) -> dict[str, Any]:
    """A job spec running WORKER over a one-file input, output to the local store."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "work.py").write_text(WORKER)
    marks = tmp_path / "marks"
    marks.mkdir()
    source = tmp_path / "input.txt"
    source.write_text("input\n")
    return {
        "name": "slow-job",
        "model": {"source_type": "local", "source_uri": str(model)},
        "workers": ["python work.py"],
        "data": {"input_uri": str(source), "output_uri": str(tmp_path / "buckets" / "out")},
        "environment": {
            "env": [{"key": "MARKS", "value": str(marks)}, {"key": "WORK_S", "value": str(work_s)}]
        },
    }


def job_row(service: ServiceProcess, job_id: str) -> tuple[str, int]:
    """(status, attempt) straight from the database file, while the service is down."""
    database = service.workdir / "service" / "autoinfer.db"
    with sqlite3.connect(database) as connection:
        row = connection.execute(
            "SELECT status, attempt FROM jobs WHERE id = ?", (job_id,)
        ).fetchone()
    assert row is not None, f"job {job_id} is not in {database}"
    return str(row[0]), int(row[1])


def follow_logs(service: ServiceProcess, job_id: str) -> threading.Thread:
    """Follow the job's log (as `autoinfer jobs logs -f` does) in a thread, until cut."""
    opened = threading.Event()

    def follow() -> None:
        url = f"{service.url}/v1/jobs/{job_id}/logs"
        try:
            with httpx.stream(
                "GET", url, params={"follow": "true"}, headers=service.http.headers, timeout=None
            ) as response:
                opened.set()
                for _ in response.iter_lines():
                    pass
        except httpx.HTTPError:
            pass  # cut by the shutdown

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    assert opened.wait(30)
    return thread


def start_slow_job(service: ServiceProcess, tmp_path: Path, work_s: float) -> str:
    job = service.post("/v1/jobs", slow_job(tmp_path, work_s))
    service.wait_for((tmp_path / "marks" / "run-1").exists, 60, "the worker to start")
    return str(job["id"])


@pytest.mark.slow
def test_sigterm_lets_the_running_job_finish_within_the_grace_period(
    serve: Callable[..., ServiceProcess], tmp_path: Path
) -> None:
    service = serve(triggers=[], executor={"grace_s": 60}, sandbox=UNSANDBOXED)
    job_id = start_slow_job(service, tmp_path, work_s=3)

    assert service.terminate() in (0, -signal.SIGTERM)

    assert job_row(service, job_id) == ("finished", 1)
    assert (tmp_path / "buckets" / "out" / "slow-job.zip").is_file()
    assert sorted(p.name for p in (tmp_path / "marks").iterdir()) == ["run-1"]


@pytest.mark.slow
def test_sigterm_hands_back_a_job_still_running_after_a_tiny_grace_period(
    serve: Callable[..., ServiceProcess], tmp_path: Path
) -> None:
    service = serve(triggers=[], executor={"grace_s": 0.5}, sandbox=UNSANDBOXED)
    job_id = start_slow_job(service, tmp_path, work_s=600)
    follower = follow_logs(service, job_id)  # an open stream must not hold the shutdown up

    assert service.terminate(timeout=60) in (0, -signal.SIGTERM)
    follower.join(10)

    # Back in the queue, its attempt not spent; no output was written.
    assert job_row(service, job_id) == ("new", 0)
    assert not (tmp_path / "buckets" / "out").exists()

    service.start()
    service.wait_for(
        lambda: service.get(f"/v1/jobs/{job_id}")["status"] == "finished", 60, "the job"
    )
    job = service.get(f"/v1/jobs/{job_id}")
    assert job["attempt"] == 1
    handed_back = [t for t in job["transitions"] if t["reason"] == "handed back at shutdown"]
    assert [t["status"] for t in handed_back] == ["new"]
    claims = [t["attempt"] for t in job["transitions"] if t["status"] == "waiting for resources"]
    assert claims == [1, 1]
    assert (tmp_path / "buckets" / "out" / "slow-job.zip").is_file()
    assert sorted(p.name for p in (tmp_path / "marks").iterdir()) == ["run-1", "run-2"]
