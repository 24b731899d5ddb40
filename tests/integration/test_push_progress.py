"""`autoinfer push` to S3 shows a bar of the bytes sent (multipart uploads included)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from rich.filesize import decimal


def test_push_to_s3_shows_bytes_sent_up_to_the_file_size(
    s3_endpoint: str, s3_client: Any, tmp_path: Path
) -> None:
    s3_client.create_bucket(Bucket="data")
    archive = tmp_path / "images.zip"
    archive.write_bytes(os.urandom(12 * 1024 * 1024))  # above the 8 MiB multipart threshold
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": s3_endpoint,
        # rich draws its live bar only on a terminal; these make it draw on the pipe.
        "TTY_COMPATIBLE": "1",
        "TTY_INTERACTIVE": "1",
        "COLUMNS": "120",
    }
    result = subprocess.run(
        [sys.executable, "-m", "autoinfer.cli", "push", str(archive), "s3://data/incoming/"],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    size = decimal(archive.stat().st_size)  # "12.6 MB"
    number, unit = size.split()
    assert f"uploading {archive.name}" in result.stderr
    assert f"{number}/{number} {unit}" in result.stderr  # every byte reported, none twice
    [uploaded] = s3_client.list_objects_v2(Bucket="data", Prefix="incoming/")["Contents"]
    assert uploaded["Size"] == archive.stat().st_size
