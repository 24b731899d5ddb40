"""A job's result zip is written straight into a local store (beside the object, renamed into
place), byte for byte the zip `make_zip` makes in scratch, with nothing left beside it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from autoinfer.errors import StorageError
from autoinfer.storage.local import LocalStore
from autoinfer.storage.output_zip import make_zip


def _output(folder: Path) -> Path:
    (folder / "sub").mkdir(parents=True)
    (folder / "a_pred.json").write_text('{"file": "a.jpg", "classes": []}')
    (folder / "sub" / "b_pred.json").write_text('{"file": "sub/b.jpg", "error": "x"}')
    (folder / "manifest.json").write_text("{}")
    return folder


def test_the_zip_written_in_place_is_the_scratch_zip_byte_for_byte(tmp_path: Path) -> None:
    output = _output(tmp_path / "output")
    store = LocalStore(tmp_path / "buckets")
    (tmp_path / "buckets" / "data" / "processed").mkdir(parents=True)
    uri = store.uri_for("data", "processed/job.zip")

    size = store.write_zip(output, uri)
    written = tmp_path / "buckets" / "data" / "processed" / "job.zip"
    reference = make_zip(output, tmp_path / "scratch" / "job.zip")
    assert written.read_bytes() == reference.read_bytes()
    assert size == written.stat().st_size
    assert os.listdir(written.parent) == ["job.zip"]  # no temp file left
    listed = store.list(store.uri_for("data", "processed/"))
    assert [info.key for info in listed] == ["job.zip"]

    (output / "a_pred.json").write_text('{"file": "a.jpg", "classes": [1]}')
    store.write_zip(output, uri)  # a repeat replaces it whole
    assert written.read_bytes() == make_zip(output, tmp_path / "again.zip").read_bytes()


def test_a_folder_or_a_key_outside_the_store_is_refused(tmp_path: Path) -> None:
    output = _output(tmp_path / "output")
    store = LocalStore(tmp_path / "buckets")
    (tmp_path / "buckets" / "data" / "processed" / "job.zip").mkdir(parents=True)
    with pytest.raises(StorageError, match="is a folder"):
        store.write_zip(output, store.uri_for("data", "processed/job.zip"))
    with pytest.raises(StorageError):
        store.write_zip(output, f"file://{tmp_path}/elsewhere.zip")
    assert not (tmp_path / "elsewhere.zip").exists()


def test_a_target_that_cannot_be_written_is_a_storage_error(tmp_path: Path) -> None:
    output = _output(tmp_path / "output")
    store = LocalStore(tmp_path / "buckets")
    (tmp_path / "buckets" / "data").mkdir(parents=True)
    (tmp_path / "buckets" / "data" / "processed").write_text("a file where a folder should be")
    with pytest.raises(StorageError, match="cannot write"):
        store.write_zip(output, store.uri_for("data", "processed/job.zip"))
