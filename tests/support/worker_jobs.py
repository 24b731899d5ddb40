"""Jobs that run worker commands through a real service: a model folder with a predict.py that
reads the trainML paths, a job spec, and waiting for a job's end through the SDK."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

from autoinfer.sdk import SyncAutoInfer

TRAINML_PREDICT = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path

    data = Path(os.environ["TRAINML_DATA_PATH"])
    out = Path(os.environ["TRAINML_OUTPUT_PATH"])
    assert os.environ["AUTOINFER_DATA_PATH"] == str(data)
    assert Path.cwd() == Path(os.environ["TRAINML_MODEL_PATH"])
    for path in sorted(data.rglob("*")):
        if path.is_file():
            (out / (path.stem + "_size.txt")).write_text(str(path.stat().st_size))
            print("processed", path.name, flush=True)
    print("job", os.environ["AUTOINFER_JOB_NAME"], os.environ["AUTOINFER_JOB_ID"])
    """
)


def make_model(folder: Path, script: str = TRAINML_PREDICT) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "predict.py").write_text(script)
    return folder


def spec(
    name: str, input_uri: str, output_uri: str, model: dict, workers: list[str], **extra: object
) -> dict:
    return {
        "name": name,
        "model": model,
        "workers": workers,
        "data": {"input_uri": input_uri, "output_uri": output_uri},
        **extra,
    }


def wait_terminal(client: SyncAutoInfer, job_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.jobs.get(job_id)
        if job.status in ("finished", "failed", "stopped"):
            return job.dict
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not end; last status {job.status}")
