"""Reading a finished job's result zip."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any


def read_output(archive_path: Path) -> dict[str, Any]:
    """Every JSON file of a result zip, by name."""
    with zipfile.ZipFile(archive_path) as archive:
        return {name: json.loads(archive.read(name)) for name in archive.namelist()}
