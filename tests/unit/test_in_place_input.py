"""A local archive is extracted from where it lies, with every protection of `extract` kept."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from autoinfer.errors import ArchiveError, InputRejected
from autoinfer.storage.archives import ArchiveLimits
from autoinfer.storage.budget import ByteBudget
from autoinfer.storage.in_place import extract_in_place
from autoinfer.storage.local import LocalStorage

GIB = 1 << 30


def budget(limit: int = GIB) -> ByteBudget:
    return ByteBudget(limit, label="input")


def _zip(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, payload in entries.items():
            archive.writestr(name, payload)
    return path


def test_a_local_zip_is_extracted_without_a_copy(tmp_path: Path) -> None:
    upload = _zip(tmp_path / "in.zip", {"a.jpg": b"1", "sub/b.jpg": b"2"})
    dest = tmp_path / "data"
    dest.mkdir()
    assert extract_in_place(LocalStorage(), str(upload), dest, ArchiveLimits(), budget())
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()) == [
        "a.jpg",
        "sub/b.jpg",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "in.zip"]  # nothing beside it


def test_links_plain_files_and_folders_are_downloaded_as_before(tmp_path: Path) -> None:
    upload = _zip(tmp_path / "in.zip", {"a.jpg": b"1"})
    (tmp_path / "link.zip").symlink_to(upload)
    (tmp_path / "photo.jpg").write_bytes(b"jpeg")
    dest = tmp_path / "data"
    dest.mkdir()
    storage = LocalStorage()
    for uri in ("link.zip", "photo.jpg", ""):
        assert not extract_in_place(storage, str(tmp_path / uri), dest, ArchiveLimits(), budget())
    assert list(dest.iterdir()) == []


def test_a_hostile_zip_read_in_place_is_still_refused(tmp_path: Path) -> None:
    upload = _zip(tmp_path / "evil.zip", {"../escaped.txt": b"x"})
    dest = tmp_path / "data"
    dest.mkdir()
    with pytest.raises(ArchiveError):
        extract_in_place(LocalStorage(), str(upload), dest, ArchiveLimits(), budget())
    assert not (tmp_path / "escaped.txt").exists()


def test_a_local_zip_larger_than_the_budget_is_refused_before_it_is_opened(tmp_path: Path) -> None:
    upload = tmp_path / "huge.zip"
    with upload.open("wb") as file:
        file.truncate(3 * GIB)  # sparse, and not even a zip: its size alone refuses it
    dest = tmp_path / "data"
    dest.mkdir()
    with pytest.raises(InputRejected, match="refused before downloading"):
        extract_in_place(LocalStorage(), str(upload), dest, ArchiveLimits(), budget(GIB))
    assert list(dest.iterdir()) == []
