"""A finished classifier job's gallery: small thumbnails of its inputs beside their predictions.

Kept in the service's data folder (`<data_dir>/gallery/<job id>/`), so the dashboard can show
what was classified after the job's scratch folder is gone, wherever its output went. The
folder holds one file, `gallery.bin`: a line of JSON indexing the thumbnails (name → offset,
length), a line of JSON listing the items, then the thumbnails' JPEG bytes one after another
(one file written per job instead of one per thumbnail). Galleries written before it
(`gallery.json` and `<n>.jpg` files) are read as they are.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from PIL import Image

THUMBNAIL_PX = 160
MAX_ITEMS = 500  # a gallery is for looking, not an archive: the first 500 images of a job
PACKED = "gallery.bin"  # the index line, the items line, then the thumbnails' bytes

log = logging.getLogger("autoinfer.gallery")


class Thumbnails:
    """A job's thumbnails, made from its images as they are decoded for the model: pass it as
    the predictor pool's `thumbnails`, then to `Gallery.save`, which makes the missing ones
    from the files. Thread-safe."""

    def __init__(self) -> None:
        self._jpegs: dict[str, bytes] = {}

    def __call__(self, file: str, image: Image.Image) -> None:
        """Make the thumbnail of `file` from `image` (the whole image as decoded for the model)."""
        encoded = encode_thumbnail(image)
        if encoded is None:
            log.warning("thumbnail of %s could not be made; made from the file instead", file)
        else:
            self.add(file, encoded)

    def add(self, file: str, jpeg: bytes) -> None:
        """Keep a thumbnail made elsewhere (a worker process) for `file`."""
        self._jpegs[file] = jpeg

    def get(self, file: str) -> bytes | None:
        return self._jpegs.get(file)


def encode_thumbnail(image: Image.Image) -> bytes | None:
    """`image` (already reduced for the model) as a gallery thumbnail: JPEG bytes, or None."""
    width, height = image.size
    scale = min(1.0, THUMBNAIL_PX / max(width, height))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    try:
        # Bilinear from the already reduced image, after an n×n box average where it is still
        # n or more times too big: half the cost of `Image.thumbnail`'s bicubic, and it is paid
        # for every image of every job.
        thumbnail = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=1.0)
        encoded = io.BytesIO()
        thumbnail.save(encoded, "JPEG", quality=80)
    except (OSError, ValueError):
        return None
    return encoded.getvalue()


class Gallery:
    """Writes and reads the galleries of jobs under one root folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def folder(self, job_id: str) -> Path:
        return self.root / job_id

    def save(
        self, job_id: str, data_dir: Path, output_dir: Path, thumbnails: Thumbnails | None = None
    ) -> int:
        """Make thumbnails for the prediction files in `output_dir` (using those already in
        `thumbnails`); returns how many items."""
        target = self.folder(job_id)
        try:
            target.mkdir(parents=True)
        except FileExistsError:  # the job ran again: its gallery is made afresh
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True)
        items: list[dict[str, Any]] = []
        index: dict[str, list[int]] = {}  # thumbnail name → [offset, length] after the lines
        jpegs: list[bytes] = []
        offset = 0
        for number, prediction_file in enumerate(
            sorted(output_dir.rglob("*_pred.json"))[:MAX_ITEMS]
        ):
            prediction = json.loads(prediction_file.read_text())
            item = dict(prediction)
            made = thumbnails.get(prediction["file"]) if thumbnails is not None else None
            jpeg = made if made is not None else _thumbnail(data_dir / prediction["file"])
            if jpeg is not None:
                item["thumbnail"] = name = f"{number}.jpg"
                index[name] = [offset, len(jpeg)]
                offset += len(jpeg)
                jpegs.append(jpeg)
            items.append(item)
        lines = (json.dumps(index) + "\n" + json.dumps(items) + "\n").encode()
        (target / PACKED).write_bytes(lines + b"".join(jpegs))
        return len(items)

    def items(self, job_id: str) -> list[dict[str, Any]]:
        folder = self.folder(job_id)
        packed = _regular(folder / PACKED)
        if packed is not None:
            with packed.open("rb") as handle:
                handle.readline()  # the index
                return json.loads(handle.readline())
        path = folder / "gallery.json"  # written before gallery.bin
        return json.loads(path.read_text()) if path.exists() else []

    def thumbnail(self, job_id: str, name: str) -> bytes | None:
        """The thumbnail's JPEG bytes, or None; `name` must be one this gallery wrote."""
        if not name.endswith(".jpg") or not name.removesuffix(".jpg").isdigit():
            return None
        folder = self.folder(job_id)
        packed = _regular(folder / PACKED)
        if packed is not None:
            with packed.open("rb") as handle:
                span = json.loads(handle.readline()).get(name)
                if span is None:
                    return None
                handle.readline()  # the items
                handle.seek(handle.tell() + span[0])
                return handle.read(span[1])
        path = _regular(folder / name)  # a gallery written before gallery.bin
        return path.read_bytes() if path is not None else None

    def delete(self, job_id: str) -> None:
        shutil.rmtree(self.folder(job_id), ignore_errors=True)

    def saved(self) -> Iterator[tuple[str, datetime]]:
        """Every gallery kept, as (job id, when it was last written); for the retention sweep."""
        try:
            entries = list(os.scandir(self.root))
        except FileNotFoundError:
            return
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    yield entry.name, datetime.fromtimestamp(entry.stat().st_mtime, UTC)
            except FileNotFoundError:  # removed meanwhile
                continue


def _thumbnail(source: Path) -> bytes | None:
    try:
        with Image.open(source) as image:
            image.draft("RGB", (THUMBNAIL_PX * 2, THUMBNAIL_PX * 2))
            rgb = image.convert("RGB")
            rgb.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
            encoded = io.BytesIO()
            rgb.save(encoded, "JPEG", quality=80)
        return encoded.getvalue()
    except Exception:  # noqa: BLE001 - an undecodable image simply has no thumbnail
        return None


def _regular(path: Path) -> Path | None:
    """`path` when it is a regular file itself (not a link to anything), else None."""
    try:
        return path if stat.S_ISREG(path.lstat().st_mode) else None
    except OSError:
        return None
