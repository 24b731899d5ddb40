"""A worker's output reaches the job log bounded: a huge line is stored cut, with a marker."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

from autoinfer.log_lines import MAX_LINE_BYTES
from tests.conftest import RunningService

HUGE_LINE = textwrap.dedent(
    """
    import sys
    sys.stdout.write("x" * 50_000_000 + "\\n")
    print("after the huge line", flush=True)
    """
)


def test_a_50_mb_output_line_is_stored_cut_at_the_cap(
    api: RunningService, seed_zip: Path, tmp_path: Path
) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "predict.py").write_text(HUGE_LINE)
    client = api.client()
    job = client.jobs.create_from_spec(
        {
            "name": "huge-line",
            "model": {"source_type": "local", "source_uri": str(model)},
            "workers": ["python predict.py"],
            "data": {"input_uri": str(seed_zip), "output_uri": str(tmp_path / "out")},
        }
    )
    deadline = time.monotonic() + 120
    while client.jobs.get(job.id).status not in ("finished", "failed", "stopped"):
        assert time.monotonic() < deadline, "the job did not end"
        time.sleep(0.1)
    assert client.jobs.get(job.id).status == "finished"
    lines = [line["line"] for line in client.jobs.get(job.id).logs()]
    [cut] = [line for line in lines if line.startswith("xxx")]
    assert cut == "x" * MAX_LINE_BYTES + f"… [cut: {50_000_000 - MAX_LINE_BYTES} bytes]"
    assert "after the huge line" in lines
