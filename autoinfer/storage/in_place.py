"""Reading a job's local input where it lies: an archive in a local store is extracted straight
into the job's scratch folder, without first copying the archive there.

Only the copy is skipped: extraction keeps every protection of `archives.extract` (paths,
links, sizes, counts, the job's disk budget) and still writes to scratch, never beside the
archive. Whether a URI can be read in place is the storage's to say (`Storage.local_path`).
"""

from __future__ import annotations

from pathlib import Path

from autoinfer.storage.archives import ArchiveLimits, archive_kind, extract
from autoinfer.storage.base import Storage
from autoinfer.storage.budget import ByteBudget


def extract_in_place(
    storage: Storage, uri: str, dest: Path, limits: ArchiveLimits, budget: ByteBudget
) -> bool:
    """Extract the archive `uri` into `dest` from where it lies; True when done, False when
    `uri` is not a local archive file (the caller downloads it as usual). An archive larger
    than the budget is refused before it is opened, as a download of it would be."""
    path = storage.local_path(uri)
    if path is None or archive_kind(path) is None:
        return False
    budget.check_declared(uri, path.stat().st_size)
    extract(path, dest, limits, budget_bytes=budget.left)
    return True
