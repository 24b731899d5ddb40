"""Jobs end to end through the real service: model sources, failures, timeouts, stop."""

import os
import subprocess
import textwrap
import time
import uuid
import zipfile
from pathlib import Path

import pytest

from tests.conftest import RunningService
from tests.support.worker_jobs import make_model, spec, wait_terminal


def test_local_model_reading_trainml_paths_gets_its_output_zipped(
    api: RunningService, seed_zip: Path, tmp_path: Path
) -> None:
    client = api.client()
    model = make_model(tmp_path / "model")
    job = client.jobs.create_from_spec(
        spec(
            "sizes",
            str(seed_zip),
            str(tmp_path / "out"),
            {"source_type": "local", "source_uri": str(model)},
            ["python predict.py"],
        )
    )
    result = wait_terminal(client, job.id)
    assert result["status"] == "finished", result["reason"]
    with zipfile.ZipFile(tmp_path / "out" / "sizes.zip") as archive:
        names = sorted(archive.namelist())
    assert len(names) == 5 and all(name.endswith("_size.txt") for name in names)
    lines = [line["line"] for line in job.logs()]
    assert any(line.startswith("processed ILSVRC2012_val_") for line in lines)
    assert f"job sizes {job.id}" in lines
    assert [t["status"] for t in result["transitions"]] == [
        "new",
        "waiting for resources",
        "waiting for data/model download",
        "running",
        "uploading",
        "finished",
    ]


def test_git_model_source_is_cloned_from_a_bare_repository(
    api: RunningService, seed_zip: Path, tmp_path: Path
) -> None:
    work = make_model(tmp_path / "work")
    bare = tmp_path / "model.git"
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    subprocess.run([*git, "-C", str(work), "add", "."], check=True)
    subprocess.run([*git, "-C", str(work), "commit", "-qm", "model"], check=True)
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    client = api.client()
    job = client.jobs.create_from_spec(
        spec(
            "from-git",
            str(seed_zip),
            str(tmp_path / "out"),
            {"source_type": "git", "source_uri": f"file://{bare}"},
            ["python predict.py"],
        )
    )
    result = wait_terminal(client, job.id)
    assert result["status"] == "finished", result["reason"]
    with zipfile.ZipFile(tmp_path / "out" / "from-git.zip") as archive:
        assert len(archive.namelist()) == 5


def test_unarchived_output_lands_file_by_file_under_the_job_name(
    api: RunningService, seed_zip: Path, tmp_path: Path
) -> None:
    client = api.client()
    model = make_model(tmp_path / "model")
    payload = spec(
        "loose",
        str(seed_zip),
        str(tmp_path / "out"),
        {"source_type": "local", "source_uri": str(model)},
        ["python predict.py"],
    )
    payload["data"]["output_options"] = {"archive": False}
    job = client.jobs.create_from_spec(payload)
    assert wait_terminal(client, job.id)["status"] == "finished"
    assert len(list((tmp_path / "out" / "loose").glob("*_size.txt"))) == 5


def test_failing_command_fails_the_job_with_reason_and_keeps_the_log(
    api: RunningService, seed_zip: Path, tmp_path: Path
) -> None:
    client = api.client()
    model = make_model(
        tmp_path / "model", "import sys\nprint('about to fail')\nsys.exit('model exploded')\n"
    )
    job = client.jobs.create_from_spec(
        spec(
            "fails",
            str(seed_zip),
            str(tmp_path / "out"),
            {"source_type": "local", "source_uri": str(model)},
            ["python predict.py"],
        )
    )
    result = wait_terminal(client, job.id)
    assert result["status"] == "failed"
    assert (
        result["reason"] == "worker command 'python predict.py' exited with code 1: model exploded"
    )
    lines = [(line["stream"], line["line"]) for line in job.logs()]
    assert ("stdout", "about to fail") in lines and ("stderr", "model exploded") in lines
    assert not (tmp_path / "out").exists()


def test_timeout_fails_the_job(api: RunningService, seed_zip: Path, tmp_path: Path) -> None:
    client = api.client()
    model = make_model(tmp_path / "model", "import time\ntime.sleep(60)\n")
    job = client.jobs.create_from_spec(
        spec(
            "slow",
            str(seed_zip),
            str(tmp_path / "out"),
            {"source_type": "local", "source_uri": str(model)},
            ["python predict.py"],
            timeout_s=2,
        )
    )
    result = wait_terminal(client, job.id)
    assert result["status"] == "failed" and "timed out after 2 s" in result["reason"]


def test_stop_while_running_ends_stopped_with_the_process_tree_gone(
    api: RunningService, seed_zip: Path, tmp_path: Path
) -> None:
    # The worker runs in its own PID namespace (the sandbox), so it cannot tell its host pids:
    # its processes are found from outside by a marker on their command lines.
    marker = f"stop-test-{uuid.uuid4().hex}"
    script = textwrap.dedent(
        """
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", sys.argv[1]])
        print("started", flush=True)
        time.sleep(300)
        """
    )
    client = api.client()
    model = make_model(tmp_path / "model", script)
    job = client.jobs.create_from_spec(
        spec(
            "stoppable",
            str(seed_zip),
            str(tmp_path / "out"),
            {"source_type": "local", "source_uri": str(model)},
            [f"python predict.py {marker}"],
        )
    )
    deadline = time.monotonic() + 60
    while "started" not in [line["line"] for line in job.logs()] or len(_marked(marker)) < 2:
        assert time.monotonic() < deadline, "the worker never started"
        time.sleep(0.05)
    pids = _marked(marker)
    job.stop()
    result = wait_terminal(client, job.id)
    assert result["status"] == "stopped"
    for pid in pids:
        assert not _alive(pid), f"process {pid} survived the stop"
    assert _marked(marker) == []


def _marked(marker: str) -> list[int]:
    """Host pids of the live processes whose command line holds `marker`."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker.encode() in (entry / "cmdline").read_bytes() and _alive(int(entry.name)):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for every purpose but the process table.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_missing_input_fails_with_a_clear_reason(api: RunningService, tmp_path: Path) -> None:
    client = api.client()
    model = make_model(tmp_path / "model")
    missing = tmp_path / "nowhere" / "images.zip"
    job = client.jobs.create_from_spec(
        spec(
            "no-input",
            str(missing),
            str(tmp_path / "out"),
            {"source_type": "local", "source_uri": str(model)},
            ["python predict.py"],
        )
    )
    result = wait_terminal(client, job.id)
    assert result["status"] == "failed"
    assert str(missing) in result["reason"] and "no such file" in result["reason"]


def test_scratch_folder_is_cleaned_after_the_job(
    api: RunningService, seed_zip: Path, tmp_path: Path
) -> None:
    client = api.client()
    model = make_model(tmp_path / "model")
    job = client.jobs.create_from_spec(
        spec(
            "clean",
            str(seed_zip),
            str(tmp_path / "out"),
            {"source_type": "local", "source_uri": str(model)},
            ["python predict.py"],
        )
    )
    assert wait_terminal(client, job.id)["status"] == "finished"
    assert list(api.service.runner_context.scratch_root.iterdir()) == []


@pytest.mark.parametrize("source", ["builtin"])
def test_seed_images_get_their_true_classes_in_the_top_five(
    api: RunningService, seed_zip: Path, tmp_path: Path, source: str
) -> None:
    import json

    from tests.conftest import SEED_TRUTH

    client = api.client()
    job = client.jobs.create(
        name="images-seed",
        type="inference",
        data={
            "input_type": "local",
            "input_uri": str(seed_zip),
            "output_type": "local",
            "output_uri": str(tmp_path / "processed"),
        },
        model={"source_type": source, "source_uri": "efficientnet_lite0"},
    )
    result = wait_terminal(client, job.id, timeout=300)
    assert result["status"] == "finished", result["reason"]
    assert result["progress"] == {"done": 5, "total": 5}
    with zipfile.ZipFile(tmp_path / "processed" / "images-seed.zip") as archive:
        predictions = sorted(n for n in archive.namelist() if n.endswith("_pred.json"))
        assert len(predictions) == 5
        for member in predictions:
            prediction = json.loads(archive.read(member))
            assert set(prediction) == {"file", "classes"}
            classes = prediction["classes"]
            assert len(classes) == 5
            assert [c["confidence"] for c in classes] == sorted(
                (c["confidence"] for c in classes), reverse=True
            )
            assert all(set(c) == {"id", "name", "confidence"} for c in classes)
            wnid, _ = SEED_TRUTH[prediction["file"]]
            assert wnid in [c["id"] for c in classes], (prediction["file"], classes)
            assert member == prediction["file"].rsplit(".", 1)[0] + "_pred.json"
