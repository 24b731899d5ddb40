"""Per-model environments through the real service: real uv, real PyPI (through the host's
configured indexes), git models served from local bare repositories.

tomli-w is the package: small, pure Python, not in autoinfer's own venv, with two releases
whose `__version__` differ.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from autoinfer.sdk import SyncAutoInfer
from tests.conftest import RunningService

PACKAGE, MODULE, VERSION_X, VERSION_Y = "tomli-w", "tomli_w", "1.0.0", "1.1.0"
PREDICT = textwrap.dedent(
    f"""
    import os, sys
    from pathlib import Path
    import {MODULE}

    out = Path(os.environ["TRAINML_OUTPUT_PATH"])
    (out / "version.txt").write_text({MODULE}.__version__)
    print("imported {MODULE}", {MODULE}.__version__, "python", sys.executable, flush=True)
    """
)


def git_model(tmp_path: Path, name: str, files: dict[str, str]) -> str:
    """A model repository served from a local bare repo; its file:// URL."""
    work, bare = tmp_path / f"{name}-work", tmp_path / f"{name}.git"
    work.mkdir()
    for file_name, text in files.items():
        (work / file_name).write_text(text)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    subprocess.run([*git, "-C", str(work), "add", "."], check=True)
    subprocess.run([*git, "-C", str(work), "commit", "-qm", "model"], check=True)
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    return f"file://{bare}"


def submit(
    client: SyncAutoInfer,
    name: str,
    model_url: str,
    tmp_path: Path,
    input_file: Path,
    **extra: object,
):  # type: ignore[no-untyped-def]
    return client.jobs.create_from_spec(
        {
            "name": name,
            "model": {"source_type": "git", "source_uri": model_url},
            "workers": ["python predict.py"],
            "data": {
                "input_uri": str(input_file),
                "output_uri": str(tmp_path / "out"),
                "output_options": {"archive": False},
            },
            **extra,
        }
    )


def wait_terminal(client: SyncAutoInfer, job_id: str, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.jobs.get(job_id)
        if job.status in ("finished", "failed", "stopped"):
            return job.dict
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not end; last status {job.status}")


def log_lines(client: SyncAutoInfer, job_id: str) -> list[str]:
    return [line["line"] for line in client.jobs.get(job_id).logs()]


def environment_line(lines: list[str]) -> str:
    matches = [
        line for line in lines if re.match(r"environment [0-9a-f]{12}: (reused|built in)", line)
    ]
    assert len(matches) == 1, lines
    return matches[0]


def freeze() -> str:
    return subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--all"], capture_output=True, text=True, check=True
    ).stdout


@pytest.fixture
def input_file(tmp_path: Path) -> Path:
    path = tmp_path / "input.txt"
    path.write_text("hello\n")
    return path


@pytest.fixture(scope="module", autouse=True)
def package_not_in_service_venv() -> None:
    found = subprocess.run(
        [sys.executable, "-c", f"import {MODULE}"], capture_output=True, check=False
    )
    assert found.returncode != 0, (
        f"{MODULE} is installed in the service's venv: pick another package"
    )


def test_two_models_pinning_different_versions_run_side_by_side_and_reuse_their_environments(
    api: RunningService, tmp_path: Path, input_file: Path
) -> None:
    before = freeze()
    client = api.client()
    model_x = git_model(
        tmp_path, "x", {"predict.py": PREDICT, "requirements.txt": f"{PACKAGE}=={VERSION_X}\n"}
    )
    model_y = git_model(
        tmp_path,
        "y",
        {
            "predict.py": PREDICT,
            "requirements.txt": f"# pinned\n{PACKAGE} == {VERSION_Y}  # newer\n",
        },
    )

    first = submit(client, "x-1", model_x, tmp_path, input_file)
    result = wait_terminal(client, first.id)
    assert result["status"] == "finished", result["reason"]
    assert (tmp_path / "out" / "x-1" / "version.txt").read_text() == VERSION_X
    first_lines = log_lines(client, first.id)
    assert "built in" in environment_line(first_lines)
    assert any(f"+ {PACKAGE}=={VERSION_X}" in line for line in first_lines)  # uv's output streamed

    second = submit(client, "y-1", model_y, tmp_path, input_file)
    result = wait_terminal(client, second.id)
    assert result["status"] == "finished", result["reason"]
    assert (tmp_path / "out" / "y-1" / "version.txt").read_text() == VERSION_Y
    assert "built in" in environment_line(log_lines(client, second.id))

    third = submit(client, "x-2", model_x, tmp_path, input_file)
    result = wait_terminal(client, third.id)
    assert result["status"] == "finished", result["reason"]
    assert (tmp_path / "out" / "x-2" / "version.txt").read_text() == VERSION_X
    third_lines = log_lines(client, third.id)
    assert (
        environment_line(third_lines).split(":")[0] == environment_line(first_lines).split(":")[0]
    )
    assert "reused" in environment_line(third_lines)
    imported = next(line for line in third_lines if line.startswith(f"imported {MODULE}"))
    assert f"{api.service.data_dir}/environments/" in imported  # the environment's python
    assert freeze() == before  # the service's own venv is never modified


def test_unresolvable_requirements_fail_the_job_with_the_resolvers_one_line_reason(
    api: RunningService, tmp_path: Path, input_file: Path
) -> None:
    client = api.client()
    model = git_model(
        tmp_path,
        "bad",
        {"predict.py": PREDICT, "requirements.txt": "no-such-package-autoinfer-xyz==1\n"},
    )
    job = submit(client, "bad", model, tmp_path, input_file)
    result = wait_terminal(client, job.id)
    assert result["status"] == "failed"
    reason = result["reason"]
    assert reason.startswith("environment: No solution found"), reason
    assert "no-such-package-autoinfer-xyz" in reason and "\n" not in reason
    assert result["attempt"] == 1  # the resolver would answer the same: not retried
    folder = api.service.data_dir / "environments"
    assert [p.name for p in folder.iterdir() if not p.name.startswith(".")] == []  # none half-made


def test_spec_packages_and_a_missing_python_version(
    api: RunningService, tmp_path: Path, input_file: Path
) -> None:
    client = api.client()
    model = git_model(tmp_path, "plain", {"predict.py": PREDICT})
    job = submit(
        client,
        "from-spec",
        model,
        tmp_path,
        input_file,
        environment={
            "type": "DEEPLEARNING_PY311",
            "packages": {"pip": [f"{PACKAGE}=={VERSION_Y}"]},
        },
    )
    result = wait_terminal(client, job.id)
    assert result["status"] == "finished", result["reason"]
    assert (tmp_path / "out" / "from-spec" / "version.txt").read_text() == VERSION_Y

    missing = submit(
        client, "py399", model, tmp_path, input_file, environment={"type": "CUSTOM_PY399"}
    )
    result = wait_terminal(client, missing.id)
    assert result["status"] == "failed"
    assert result["reason"].startswith(
        "environment: environment.type CUSTOM_PY399: Python 3.99 is not available on this host; installed: 3."
    ), result["reason"]


def test_concurrent_jobs_with_the_same_new_requirements_build_it_once(
    api: RunningService, tmp_path: Path, input_file: Path
) -> None:
    client = api.client()
    model = git_model(
        tmp_path, "same", {"predict.py": PREDICT, "requirements.txt": f"{PACKAGE}=={VERSION_X}\n"}
    )
    jobs = [submit(client, f"same-{i}", model, tmp_path, input_file) for i in range(2)]
    results = [wait_terminal(client, job.id) for job in jobs]
    assert [r["status"] for r in results] == ["finished", "finished"], [
        r["reason"] for r in results
    ]
    lines = [environment_line(log_lines(client, job.id)) for job in jobs]
    assert sorted("built in" in line for line in lines) == [False, True], lines
    assert len({line.split(":")[0] for line in lines}) == 1


def test_a_model_without_requirements_still_gets_its_own_python(
    api: RunningService, tmp_path: Path, input_file: Path
) -> None:
    client = api.client()
    script = "import sys, pip; print('python', sys.executable); print('pip', pip.__file__)\n"
    model = git_model(tmp_path, "bare", {"predict.py": script})
    job = submit(client, "bare", model, tmp_path, input_file)
    result = wait_terminal(client, job.id)
    assert result["status"] == "finished", result["reason"]
    lines = log_lines(client, job.id)
    environments = f"{api.service.data_dir}/environments/"
    assert any(line.startswith("python " + environments) for line in lines), lines
    assert any(line.startswith("pip " + environments) for line in lines), lines


def test_jobs_running_at_once_share_one_build_across_threads(tmp_path: Path) -> None:
    """The manager alone, from threads: the lock makes one build and two reuses."""
    from autoinfer.environments import EnvironmentManager
    from autoinfer.jobs.spec import Environment

    class Log:
        def __init__(self) -> None:
            self.lines: list[str] = []

        def write(self, stream: str, line: str) -> None:
            self.lines.append(line)

        def system(self, message: str) -> None:
            self.lines.append(message)

    manager = EnvironmentManager(tmp_path / "environments")
    model = tmp_path / "model"
    model.mkdir()
    (model / "requirements.txt").write_text(f"{PACKAGE}=={VERSION_Y}\n")
    logs = [Log() for _ in range(3)]
    prepared = []

    def prepare(log: Log) -> None:
        prepared.append(manager.prepare(model, Environment(), log))

    threads = [threading.Thread(target=prepare, args=(log,)) for log in logs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(prepared) == 3 and len({env.hash for env in prepared}) == 1
    built = [line for log in logs for line in log.lines if ": built in " in line]
    reused = [line for log in logs for line in log.lines if ": reused" in line]
    assert len(built) == 1 and len(reused) == 2
    mode = prepared[0].root.stat().st_mode & 0o777
    assert mode == 0o755
