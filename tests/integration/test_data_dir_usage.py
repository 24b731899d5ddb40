"""The data folder's size and its disk's free space: measured off the request path, cached,
shown by `/metrics` and `autoinfer status`; `doctor` says when the disk is nearly full; the
housekeeping thread's scheduling."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from autoinfer import disk_usage
from autoinfer.cli.doctor import Doctor
from autoinfer.config import Config
from autoinfer.disk_usage import DataDirUsage, DiskSpace
from autoinfer.housekeeping import Housekeeping, PeriodicTask
from tests.conftest import RunningService

CLI = [sys.executable, "-m", "autoinfer.cli"]


def test_the_size_is_cached_until_it_is_older_than_its_max_age(tmp_path: Path) -> None:
    now = [0.0]
    usage = DataDirUsage(tmp_path, max_age_s=60, clock=lambda: now[0])
    (tmp_path / "a").write_bytes(b"x" * 100_000)
    first = usage.bytes()
    assert first >= 100_000
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "b").write_bytes(b"y" * 200_000)
    now[0] = 59.0
    assert usage.bytes() == first  # cached: no walk
    now[0] = 61.0
    assert usage.bytes() >= first + 200_000


def test_nearly_full_means_under_5_percent_or_under_1_gib_free() -> None:
    gib = 1 << 30
    assert DiskSpace(total_bytes=100 * gib, free_bytes=4 * gib).nearly_full
    assert not DiskSpace(total_bytes=100 * gib, free_bytes=6 * gib).nearly_full
    assert DiskSpace(total_bytes=10 * gib, free_bytes=gib - 1).nearly_full
    assert not DiskSpace(total_bytes=10 * gib, free_bytes=2 * gib).nearly_full


def test_doctor_warns_when_the_disk_of_data_dir_is_nearly_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = Config(data_dir=tmp_path / "state")
    [finding] = Doctor(config, None).check_data_dir()
    assert finding.ok and "free of" in finding.message
    # This disk, judged by a threshold above its size: nearly full.
    monkeypatch.setattr(disk_usage, "LOW_FREE_BYTES", 1 << 62)
    [finding] = Doctor(config, None).check_data_dir()
    assert not finding.ok
    assert "nearly full" in finding.message and "retention" in finding.message


def test_metrics_and_status_show_the_data_folder_size(api: RunningService) -> None:
    metrics = httpx.get(f"{api.url}/metrics", headers=api.headers, timeout=30).text
    [line] = [line for line in metrics.splitlines() if line.startswith("autoinfer_data_dir_bytes ")]
    assert float(line.split()[1]) > 0  # the database at least
    assert "autoinfer_data_dir_disk_free_bytes " in metrics
    result = subprocess.run(
        [*CLI, "status"],
        check=False,
        capture_output=True,
        text=True,
        env={**api.cli_env(), "COLUMNS": "200"},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    [line] = [line for line in result.stdout.splitlines() if line.startswith("data: ")]
    assert str(api.service.data_dir) in line and " free of " in line


def test_housekeeping_runs_each_task_when_due_and_survives_a_failing_one() -> None:
    now = [100.0]
    ran: list[str] = []

    def broken() -> None:
        ran.append("broken")
        raise RuntimeError("boom")

    housekeeping = Housekeeping(
        [
            PeriodicTask("often", 10, lambda: ran.append("often")),
            PeriodicTask("broken", 10, broken),
            PeriodicTask("later", 60, lambda: ran.append("later"), first_after_s=30),
        ],
        clock=lambda: now[0],
    )
    housekeeping.schedule()
    assert housekeeping.run_due() == ["often", "broken"]
    now[0] = 105.0
    assert housekeeping.run_due() == []
    now[0] = 130.0
    assert housekeeping.run_due() == ["often", "broken", "later"]
    assert ran == ["often", "broken", "often", "broken", "later"]
