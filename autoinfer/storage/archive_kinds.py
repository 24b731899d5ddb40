"""Which files are archives: by name (.zip, .tar, .tar.gz, .tgz) and by their first bytes."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import Literal

ArchiveKind = Literal["zip", "tar"]

#: Suffixes that mark an archive, longest first; matched case-insensitively.
ARCHIVE_SUFFIXES: tuple[tuple[str, ArchiveKind], ...] = (
    (".tar.gz", "tar"),
    (".tgz", "tar"),
    (".tar", "tar"),
    (".zip", "zip"),
)
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")


def kind_by_name(name: str) -> ArchiveKind | None:
    """`zip`/`tar` when the name ends in .zip, .tar, .tar.gz or .tgz (any case), else None."""
    lower = name.lower()
    for suffix, kind in ARCHIVE_SUFFIXES:
        if lower.endswith(suffix):
            return kind
    return None


def archive_kind(path: Path) -> ArchiveKind | None:
    """What `path` holds: by its suffix, corrected by its magic bytes when the file exists.

    A file with another extension (`.jpg`, `.docx`) is never an archive; a file with no
    extension at all (e.g. an HTTP download named `download`) is recognised by its content.
    """
    by_name = kind_by_name(path.name)
    if by_name is None and path.suffix:
        return None
    try:
        by_magic = sniff(path) if path.is_file() else None
    except OSError:
        by_magic = None  # unreadable: extraction, if attempted, reports the real error
    return by_magic or by_name


def sniff(path: Path) -> ArchiveKind | None:
    """`zip`/`tar` from the first bytes of the file (gzip-compressed tars included)."""
    with path.open("rb") as file:
        head = file.read(512)
    if head[:4] in ZIP_MAGICS:
        return "zip"
    if _is_tar_header(head):
        return "tar"
    if head[:2] == b"\x1f\x8b":
        try:
            with gzip.open(path, "rb") as unzipped:
                inner = unzipped.read(512)
        except (OSError, EOFError, zlib.error):
            return None
        if _is_tar_header(inner):
            return "tar"
    return None


def _is_tar_header(block: bytes) -> bool:
    return block[257:262] == b"ustar"


def tar_read_mode(archive: Path) -> Literal["r:gz", "r:bz2", "r:xz", "r:"]:
    """The tarfile mode for the archive's compression, so a failure names one reason."""
    with archive.open("rb") as file:
        head = file.read(6)
    if head.startswith(b"\x1f\x8b"):
        return "r:gz"
    if head.startswith(b"BZh"):
        return "r:bz2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "r:xz"
    return "r:"
