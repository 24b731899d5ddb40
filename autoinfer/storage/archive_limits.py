"""What an input archive may unpack to (`ArchiveLimits`); `archives.extract` enforces it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from autoinfer.errors import ConfigError

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB


@dataclass(frozen=True)
class ArchiveLimits:
    """What an input archive may unpack to; refusals are ArchiveErrors.

    `max_ratio` (uncompressed / compressed) is checked per zip entry and over the whole
    archive, for whatever unpacks to more than `ratio_floor_bytes` (tiny files of repeated
    bytes legitimately compress very well). `nested`: an archive inside the archive is
    refused (`reject`) or extracted as a plain file (`keep`).
    """

    max_total_bytes: int = 10 * GiB
    max_entries: int = 100_000
    max_ratio: float = 250.0
    nested: Literal["reject", "keep"] = "reject"
    ratio_floor_bytes: int = 1 * MiB

    def __post_init__(self) -> None:
        if self.max_total_bytes <= 0 or self.max_entries <= 0 or self.max_ratio <= 1:
            raise ConfigError(f"{self}: limits must be positive (max_ratio above 1)")
        if self.nested not in ("reject", "keep"):
            raise ConfigError(f"{self}: nested must be 'reject' or 'keep'")
