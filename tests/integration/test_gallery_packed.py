"""A job's gallery is one file (`gallery.bin`: the thumbnails' index, the items, the JPEGs),
read back item by item and thumbnail by thumbnail; galleries in the earlier layout (one
`gallery.json` and a file per thumbnail) are still read, and no link is followed."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

from PIL import Image

from autoinfer.gallery import PACKED, Gallery, Thumbnails


def _jpeg(colour: str, size: int = 64) -> bytes:
    encoded = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(encoded, "JPEG")
    return encoded.getvalue()


def _job(tmp_path: Path) -> tuple[Path, Path, Thumbnails]:
    data, output = tmp_path / "data", tmp_path / "output"
    data.mkdir()
    output.mkdir()
    (data / "made.jpg").write_bytes(b"decoded by a worker")
    (data / "from-file.jpg").write_bytes(_jpeg("blue", 400))
    (data / "broken.jpg").write_bytes(b"not an image")
    for name, record in {
        "made": {"file": "made.jpg", "classes": [{"id": "n1", "name": "a", "confidence": 0.9}]},
        "from-file": {"file": "from-file.jpg", "classes": []},
        "broken": {"file": "broken.jpg", "error": "cannot identify image file"},
    }.items():
        (output / f"{name}_pred.json").write_text(json.dumps(record))
    (output / "manifest.json").write_text("{}")
    thumbnails = Thumbnails()
    thumbnails.add("made.jpg", _jpeg("red"))
    return data, output, thumbnails


def test_a_gallery_is_one_file_read_back_item_by_item(tmp_path: Path) -> None:
    data, output, thumbnails = _job(tmp_path)
    gallery = Gallery(tmp_path / "gallery")
    assert gallery.save("job1", data, output, thumbnails) == 3
    assert os.listdir(gallery.folder("job1")) == [PACKED]

    items = gallery.items("job1")
    assert [item["file"] for item in items] == ["broken.jpg", "from-file.jpg", "made.jpg"]
    assert "thumbnail" not in items[0] and items[0]["error"]
    assert gallery.thumbnail("job1", items[2]["thumbnail"]) == _jpeg("red")  # the worker's
    from_file = gallery.thumbnail("job1", items[1]["thumbnail"])
    assert from_file is not None
    with Image.open(io.BytesIO(from_file)) as image:
        assert image.format == "JPEG" and max(image.size) <= 160
    for name in ("0.jpg", "9.jpg", "../gallery.bin", "1", "1.png", PACKED):
        assert gallery.thumbnail("job1", name) is None, name

    (data / "made.jpg").unlink()  # the job ran again, with fewer images
    (output / "made_pred.json").unlink()
    assert gallery.save("job1", data, output) == 2
    assert [item["file"] for item in gallery.items("job1")] == ["broken.jpg", "from-file.jpg"]
    assert gallery.items("no-such-job") == [] and gallery.thumbnail("no-such-job", "1.jpg") is None


def test_a_gallery_of_the_earlier_layout_is_read_and_links_are_not_followed(
    tmp_path: Path,
) -> None:
    gallery = Gallery(tmp_path / "gallery")
    old = gallery.folder("old")
    old.mkdir(parents=True)
    (old / "gallery.json").write_text(json.dumps([{"file": "a.jpg", "thumbnail": "0.jpg"}]))
    (old / "0.jpg").write_bytes(b"jpeg bytes")
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(b"not the gallery's")
    (old / "1.jpg").symlink_to(secret)
    assert gallery.items("old") == [{"file": "a.jpg", "thumbnail": "0.jpg"}]
    assert gallery.thumbnail("old", "0.jpg") == b"jpeg bytes"
    assert gallery.thumbnail("old", "1.jpg") is None

    linked = gallery.folder("linked")
    linked.mkdir()
    (linked / PACKED).symlink_to(secret)
    assert gallery.thumbnail("linked", "0.jpg") is None and gallery.items("linked") == []
