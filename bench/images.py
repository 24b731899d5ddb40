"""The benchmark's image set: photos made distinct by random crops, flips and sizes, and zips.

The photos are the seed images (tests/data/images.zip, ImageNet validation photos) and the
colour photos that scikit-image ships (no download). Every generated file is different, so no
cache or deduplication can make a run look faster than it is; the set is the same on every run
(a fixed random seed).
"""

from __future__ import annotations

import io
import random
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from autoinfer.predictors.quantize import PHOTOS

SEED_ZIP = Path(__file__).resolve().parent.parent / "tests" / "data" / "images.zip"
SKIMAGE_PHOTOS = PHOTOS  # the photos the int8 model is calibrated on (named in one place)
PNG_SHARE = 0.1  # the rest are JPEGs, as most uploads are


def source_photos() -> list[Image.Image]:
    """The photos the set is made from, as RGB images."""
    from skimage import data

    photos: list[Image.Image] = []
    with zipfile.ZipFile(SEED_ZIP) as archive:
        for name in sorted(archive.namelist()):
            with Image.open(io.BytesIO(archive.read(name))) as image:
                photos.append(image.convert("RGB"))
    photos.extend(
        Image.fromarray(np.asarray(getattr(data, name)())).convert("RGB") for name in SKIMAGE_PHOTOS
    )
    photos.append(Image.fromarray(data.stereo_motorcycle()[0]).convert("RGB"))
    return photos


def build_images(folder: Path, count: int, seed: int = 5) -> list[Path]:
    """Write `count` distinct images into `folder` (`img-0000.jpg`, ...); their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    photos = source_photos()
    paths: list[Path] = []
    for index in range(count):
        photo = photos[index % len(photos)]
        image = _variant(photo, rng)
        if rng.random() < PNG_SHARE:
            path = folder / f"img-{index:04d}.png"
            image.save(path, "PNG", compress_level=1)
        else:
            path = folder / f"img-{index:04d}.jpg"
            image.save(path, "JPEG", quality=rng.randint(82, 95))
        paths.append(path)
    return paths


def _variant(photo: Image.Image, rng: random.Random) -> Image.Image:
    """A random crop (60-100 % of each side), maybe mirrored, scaled to an upload-like size."""
    width, height = photo.size
    crop_w = int(width * rng.uniform(0.6, 1.0))
    crop_h = int(height * rng.uniform(0.6, 1.0))
    left, top = rng.randint(0, width - crop_w), rng.randint(0, height - crop_h)
    image = photo.crop((left, top, left + crop_w, top + crop_h))
    if rng.random() < 0.5:
        image = ImageOps.mirror(image)
    # Most uploads are camera or web photos a few hundred to ~1000 pixels across.
    longest = rng.randint(320, 1000)
    scale = longest / max(image.size)
    if scale < 1.0:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.BILINEAR)
    return image


def write_zip(images: Sequence[Path], target: Path) -> Path:
    """A zip of `images` (stored flat, as a user zips a folder of photos) at `target`."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as archive:
        for image in images:
            archive.write(image, image.name)
    return target


def images_in(archive: Path) -> int:
    """How many files a zip holds (every one an image here)."""
    with zipfile.ZipFile(archive) as opened:
        return sum(not info.is_dir() for info in opened.infolist())


def chunks(images: Sequence[Path], size: int) -> list[list[Path]]:
    """`images` cut into consecutive groups of `size`."""
    return [list(images[start : start + size]) for start in range(0, len(images), size)]


def real_photos(folder: Path) -> list[Path]:
    """Every real photo the tests and the demo classify, as files in `folder`: the seed images
    and the demo's scikit-image photos (written as the demo writes them)."""
    from skimage import data

    with zipfile.ZipFile(SEED_ZIP) as archive:
        archive.extractall(folder)
        paths = [folder / name for name in sorted(archive.namelist())]
    for name in ("chelsea", "coffee", "rocket", "astronaut"):
        path = folder / f"{name}.jpg"
        Image.fromarray(np.asarray(getattr(data, name)())).convert("RGB").save(path, quality=92)
        paths.append(path)
    return paths
