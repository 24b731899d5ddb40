"""The Ray executor against a real local Ray instance: the reference workflow, the resources a
job asks for, stop, and a worker process killed mid-job."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import tempfile
import textwrap
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from autoinfer.config import (
    Config,
    ExecutorConfig,
    SourceConfig,
    StoreConfig,
    TriggerConfig,
)
from autoinfer.jobs.records import JobRecord
from autoinfer.jobs.spec import JobSpec
from autoinfer.sandbox import SandboxConfig
from tests.conftest import SEED_TRUTH, RunningService
from tests.support.waiting import wait_until

ray = pytest.importorskip("ray")

WORKER_LINE = re.compile(r"^ray: node \S+ \(\w+\), worker pid (\d+), resources (\{.*\})$")


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory, model_cache: Path) -> Iterator[None]:
    """One local Ray instance for this module's tests (shut down after them, so that the rest of
    the suite runs without it): 2 CPUs, and one (declared) T4 GPU so that GPU requests can be
    scheduled and checked without a GPU. Model actors find the session's model cache through
    XDG_CACHE_HOME (their default cache is $XDG_CACHE_HOME/autoinfer)."""
    cache_home = tmp_path_factory.mktemp("ray-cache-home")
    (cache_home / "autoinfer").symlink_to(model_cache)
    ray.init(
        num_cpus=2,
        num_gpus=1,
        resources={"accelerator_type:T4": 1},
        include_dashboard=False,
        namespace="autoinfer-tests",
        runtime_env={"env_vars": {"XDG_CACHE_HOME": str(cache_home)}},
        logging_level="WARNING",
    )
    yield
    ray.shutdown()


@pytest.fixture
def on_ray(
    ray_cluster: None,
    start_service: Callable[..., RunningService],
    make_config: Callable[..., Config],
) -> Callable[..., RunningService]:
    """Start a service whose executor is the Ray executor on the module's Ray instance."""

    def start(**overrides: object) -> RunningService:
        executor = ExecutorConfig(type="ray", max_jobs=2, lease_s=5)
        # The commands here leave pid files and markers on the host, outside a sandbox's view:
        # this file tests the executor (the sandbox has its own tests).
        overrides.setdefault("sandbox", SandboxConfig(type="none"))
        return start_service(make_config(executor=executor, **overrides))

    return start


def command_spec(name: str, model: Path, seed_zip: Path, out: Path, **extra: object) -> dict:
    return {
        "name": name,
        "model": {"source_type": "local", "source_uri": str(model)},
        "workers": ["python predict.py"],
        "data": {"input_uri": str(seed_zip), "output_uri": str(out)},
        **extra,
    }


def make_model(folder: Path, script: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "predict.py").write_text(textwrap.dedent(script))
    return folder


def wait_terminal(api: RunningService, job_id: str, timeout: float = 180) -> JobRecord:
    def ended() -> JobRecord | None:
        job = api.service.jobs.get(job_id)
        return job if job.terminal else None

    return wait_until(ended, f"job {job_id} to end", timeout=timeout)  # type: ignore[return-value]


def log_lines(api: RunningService, job_id: str) -> list[str]:
    return [line.line for line in api.service.jobs.logs(job_id)]


def worker_line(api: RunningService, job_id: str) -> re.Match[str] | None:
    return next((m for line in log_lines(api, job_id) if (m := WORKER_LINE.match(line))), None)


def test_reference_workflow_classifies_the_seed_images_on_ray(
    on_ray: Callable[..., RunningService], seed_zip: Path, tmp_path: Path
) -> None:
    buckets = tmp_path / "buckets"
    incoming = buckets / "data" / "incoming"
    incoming.mkdir(parents=True)
    api = on_ray(
        stores={"local": StoreConfig(type="local", root=str(buckets))},
        sources=[SourceConfig(type="watch", store="local")],
        triggers=[
            TriggerConfig(
                name="classify-incoming",
                bucket="data",
                prefix="incoming/",
                suffix=".zip",
                job={
                    "name": "{key_stem}",
                    "model": {"source_type": "builtin", "source_uri": "efficientnet_lite0"},
                    "data": {"input_uri": "{uri}", "output_uri": "{bucket_uri}/processed"},
                },
            )
        ],
    )
    partial = incoming / ".images-ray.zip.part"
    partial.write_bytes(seed_zip.read_bytes())
    partial.rename(incoming / "images-ray.zip")

    def created() -> JobRecord | None:
        jobs, _ = api.service.jobs.list(name="images-ray")
        return jobs[0] if jobs else None

    job = wait_until(created, "the trigger to create the job", timeout=60)
    result = wait_terminal(api, job.id, timeout=300)  # type: ignore[attr-defined]
    assert result.status == "finished", result.reason
    assert result.progress is not None and (result.progress.done, result.progress.total) == (5, 5)
    assert worker_line(api, result.id) is not None, "the job did not run in a Ray task"
    with zipfile.ZipFile(buckets / "data" / "processed" / "images-ray.zip") as archive:
        predictions = sorted(n for n in archive.namelist() if n.endswith("_pred.json"))
        assert len(predictions) == 5
        for member in predictions:
            prediction = json.loads(archive.read(member))
            assert len(prediction["classes"]) == 5
            wnid, _ = SEED_TRUTH[prediction["file"]]
            assert wnid in [c["id"] for c in prediction["classes"]], prediction
    gallery = api.service.runner_context.gallery
    assert gallery is not None and len(gallery.items(result.id)) == 5


def test_task_gets_the_cpus_gpus_and_gpu_type_the_job_spec_asks_for(
    on_ray: Callable[..., RunningService], seed_zip: Path, tmp_path: Path
) -> None:
    api = on_ray()
    model = make_model(
        tmp_path / "model",
        """
        import os
        print("visible gpus", os.environ.get("CUDA_VISIBLE_DEVICES"))
        """,
    )
    resources = {"cpu_count": 2, "gpu_count": 1, "gpu_type": "t4"}
    spec = command_spec("gpu-job", model, seed_zip, tmp_path / "out", resources=resources)
    job = api.client().jobs.create_from_spec(spec)
    result = wait_terminal(api, job.id)
    assert result.status == "finished", result.reason
    match = worker_line(api, job.id)
    assert match is not None
    assert json.loads(match[2]) == {"CPU": 2.0, "GPU": 1.0, "accelerator_type:T4": 0.001}
    assert "visible gpus 0" in log_lines(api, job.id)


def test_stop_ends_a_running_ray_job_stopped_with_its_process_tree_gone(
    on_ray: Callable[..., RunningService], seed_zip: Path, tmp_path: Path
) -> None:
    api = on_ray()
    pid_file = tmp_path / "pids"
    model = make_model(
        tmp_path / "model",
        f"""
        import os, subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
        open({str(pid_file)!r}, "w").write(f"{{os.getpid()}} {{child.pid}}")
        print("started", flush=True)
        time.sleep(300)
        """,
    )
    job = api.client().jobs.create_from_spec(
        command_spec("stoppable", model, seed_zip, tmp_path / "out")
    )
    wait_until(
        lambda: pid_file.exists() and pid_file.read_text().strip(), "the command", timeout=120
    )
    pids = [int(p) for p in pid_file.read_text().split()]
    job.stop()
    result = wait_terminal(api, job.id, timeout=60)
    assert result.status == "stopped"
    assert result.reason == "stopped on request"
    for pid in pids:
        wait_until(lambda pid=pid: not _alive(pid), f"process {pid} to end", timeout=10)
    assert not (tmp_path / "out").exists()


def test_job_asking_for_a_gpu_type_no_node_has_waits_for_resources_and_can_be_stopped(
    on_ray: Callable[..., RunningService], seed_zip: Path, tmp_path: Path
) -> None:
    api = on_ray()
    model = make_model(tmp_path / "model", "print('never runs')\n")
    resources = {"cpu_count": 1, "gpu_count": 1, "gpu_type": "a100"}
    spec = command_spec("needs-a100", model, seed_zip, tmp_path / "out", resources=resources)
    job = api.client().jobs.create_from_spec(spec)
    note = wait_until(
        lambda: next((line for line in log_lines(api, job.id) if "no node" in line), None),
        "the placement note",
        timeout=60,
    )
    assert "accelerator_type:A100" in str(note)
    assert api.service.jobs.get(job.id).status == "waiting for resources"
    job.stop()
    result = wait_terminal(api, job.id, timeout=60)
    assert result.status == "stopped"
    assert "never runs" not in log_lines(api, job.id)


def test_shutdown_hands_a_running_ray_job_back_without_spending_its_attempt(
    on_ray: Callable[..., RunningService], seed_zip: Path, tmp_path: Path
) -> None:
    api = on_ray()
    pid_file = tmp_path / "pid"
    model = make_model(
        tmp_path / "model",
        f"""
        import os, time
        open({str(pid_file)!r}, "w").write(str(os.getpid()))
        time.sleep(300)
        """,
    )
    job = api.client().jobs.create_from_spec(
        command_spec("long", model, seed_zip, tmp_path / "out")
    )
    wait_until(
        lambda: pid_file.exists() and pid_file.read_text().strip(), "the command", timeout=120
    )
    api.service.executor.stop(grace_s=0)
    result = api.service.jobs.get(job.id)
    assert (result.status, result.attempt) == ("new", 0)
    assert any(
        line.startswith("handed back: service shutting down") for line in log_lines(api, job.id)
    )
    wait_until(lambda: not _alive(int(pid_file.read_text())), "the command to end", timeout=10)


def test_killed_worker_process_leads_to_a_new_attempt_and_one_result(
    on_ray: Callable[..., RunningService], seed_zip: Path, tmp_path: Path
) -> None:
    api = on_ray()
    marker = tmp_path / "first-attempt"
    model = make_model(
        tmp_path / "model",
        f"""
        import os, time
        from pathlib import Path
        marker = Path({str(marker)!r})
        if not marker.exists():
            marker.write_text(str(os.getpgid(0)))
            print("first attempt", flush=True)
            time.sleep(0.5)
            print("waiting to be killed", flush=True)  # the log is written a batch behind
            time.sleep(300)
        out = Path(os.environ["AUTOINFER_OUTPUT_PATH"])
        (out / "result.txt").write_text("second attempt")
        print("second attempt", flush=True)
        """,
    )
    spec = JobSpec.model_validate(command_spec("survivor", model, seed_zip, tmp_path / "out"))
    job, _ = api.service.jobs.create(spec, max_attempts=2)
    api.service.executor.wake()
    wait_until(
        lambda: "first attempt" in log_lines(api, job.id), "the first attempt to run", timeout=120
    )
    match = worker_line(api, job.id)
    assert match is not None
    os.kill(int(match[1]), signal.SIGKILL)  # the Ray worker process running the task
    try:
        result = wait_terminal(api, job.id)
    finally:
        _kill_group(int(marker.read_text()))  # the first attempt's command, orphaned
    assert result.status == "finished", result.reason
    assert result.attempt == 2
    retried = [t for t in result.transitions if t.status == "new" and t.attempt == 1]
    assert len(retried) == 1 and "lost its Ray worker" in (retried[0].reason or "")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["survivor.zip"]
    with zipfile.ZipFile(tmp_path / "out" / "survivor.zip") as archive:
        assert archive.read("result.txt") == b"second attempt"
    assert log_lines(api, job.id).count("second attempt") == 1
    scratch = Path(tempfile.gettempdir()) / "autoinfer" / "scratch"
    assert list(scratch.glob(f"{job.id}-*")) == []  # the dead attempt's folder too


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
