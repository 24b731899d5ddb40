"""Input archives written into a local bucket, with the S3 notification that announces each."""

from __future__ import annotations

import hashlib
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from autoinfer.events.model import object_created, s3_record


def archive(path: Path, files: dict[str, str]) -> dict[str, Any]:
    """Write a zip in the local bucket; the S3 notification announcing it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as handle:
        for name, text in files.items():
            handle.writestr(name, text)
    key = path.relative_to(path.parents[2] / "data").as_posix()
    event = object_created(
        "data",
        key,
        size=path.stat().st_size,
        etag=hashlib.md5(path.read_bytes()).hexdigest(),
        modified=datetime.now(UTC),
        flavour="aws",
    )
    return {"Records": [s3_record(event)]}
