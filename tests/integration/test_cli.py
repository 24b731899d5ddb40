"""The `autoinfer` command line against a real service."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import RunningService
from tests.support.worker_jobs import make_model, wait_terminal

CLI = [sys.executable, "-m", "autoinfer.cli"]


def run_cli(api: RunningService, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, env=api.cli_env(), timeout=120, check=False
    )


def test_jobs_create_list_get_and_wait(api: RunningService, seed_zip: Path, tmp_path: Path) -> None:
    model = make_model(tmp_path / "model")
    created = run_cli(
        api,
        "jobs",
        "create",
        "--name",
        "cli-job",
        "--input",
        str(seed_zip),
        "--output",
        str(tmp_path / "out"),
        "--model-type",
        "local",
        "--model",
        str(model),
        "--worker",
        "python predict.py",
        "--json",
    )
    assert created.returncode == 0, created.stderr
    job = json.loads(created.stdout)
    waited = run_cli(api, "jobs", "wait", job["id"], "--timeout", "120", "--json")
    assert waited.returncode == 0, waited.stderr
    assert json.loads(waited.stdout)["status"] == "finished"
    listed = json.loads(run_cli(api, "jobs", "list", "--json").stdout)
    assert [item["name"] for item in listed] == ["cli-job"]
    by_name = json.loads(run_cli(api, "jobs", "get", "cli-job", "--json").stdout)
    assert by_name["id"] == job["id"] and by_name["output_location"].endswith("cli-job.zip")
    shown = run_cli(api, "jobs", "get", "cli-job")  # by name: the detail, spec included
    assert shown.returncode == 0 and f"input: {seed_zip}" in shown.stdout, shown.stderr
    table = run_cli(api, "jobs", "list")
    assert "cli-job" in table.stdout and "finished" in table.stdout


def test_errors_are_one_line_without_traceback(api: RunningService) -> None:
    result = run_cli(api, "jobs", "get", "does-not-exist")
    assert result.returncode == 1
    assert result.stderr.strip() == "error: job does-not-exist: no job has this id or name"
    env = {**api.cli_env(), "AUTOINFER_KEY": "wrong"}
    wrong = subprocess.run(
        [*CLI, "jobs", "list"], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert (
        wrong.returncode == 1
        and "invalid API key" in wrong.stderr
        and "Traceback" not in wrong.stderr
    )


def test_logs_follow_prints_lines_while_the_job_runs(
    api: RunningService, seed_zip: Path, tmp_path: Path
) -> None:
    script = textwrap.dedent(
        """
        import time
        for i in range(30):
            print(f"tick {i}", flush=True)
            time.sleep(0.2)
        """
    )
    model = make_model(tmp_path / "model", script)
    client = api.client()
    job = client.jobs.create_from_spec(
        {
            "name": "ticker",
            "model": {"source_type": "local", "source_uri": str(model)},
            "workers": ["python predict.py"],
            "data": {"input_uri": str(seed_zip), "output_uri": str(tmp_path / "out")},
        }
    )
    follower = subprocess.Popen(
        [*CLI, "jobs", "logs", job.id, "-f"], stdout=subprocess.PIPE, text=True, env=api.cli_env()
    )
    assert follower.stdout is not None
    seen_while_running = False
    output = []
    for line in follower.stdout:
        output.append(line)
        if line.rstrip().endswith(" tick 2"):
            seen_while_running = client.jobs.get(job.id).status == "running"
    follower.wait(timeout=60)
    assert seen_while_running, "log lines only appeared after the job ended"
    text = "".join(output)
    assert "tick 29" in text and "job finished" in text
    assert wait_terminal(client, job.id)["status"] == "finished"
    assert follower.returncode == 0
