"""The classifier's input is the same, bit for bit, however cheaply it is computed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from autoinfer.predictors.images import IMAGENET_MEAN, IMAGENET_STD, decode_image, normalize

TRANSPOSES = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def convert_scale_and_shift(crops: np.ndarray) -> np.ndarray:
    """The standardisation written out step by step, in float32."""
    scale = np.asarray([1.0 / (255.0 * s) for s in IMAGENET_STD], dtype=np.float32)
    shift = np.asarray([m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)])
    tensor = crops.astype(np.float32) * scale - shift.astype(np.float32)
    return np.ascontiguousarray(np.moveaxis(tensor, -1, -3))


def test_normalize_gives_exactly_the_float32_values_of_converting_scaling_and_shifting() -> None:
    crops = np.random.default_rng(5).integers(0, 256, (4, 224, 224, 3), dtype=np.uint8)
    batch = normalize(crops)
    assert batch.dtype == np.float32 and batch.flags.c_contiguous
    assert np.array_equal(batch, convert_scale_and_shift(crops))
    assert np.array_equal(normalize(crops[1]), convert_scale_and_shift(crops[1]))


def test_normalize_reads_a_view_of_a_bigger_buffer_without_copying_it_first() -> None:
    buffer = np.random.default_rng(6).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    assert np.array_equal(normalize(buffer[:3]), convert_scale_and_shift(buffer[:3].copy()))


@pytest.mark.parametrize("orientation", sorted(TRANSPOSES))
def test_each_exif_orientation_decodes_like_the_image_stored_upright(
    tmp_path: Path, orientation: int
) -> None:
    rng = np.random.default_rng(orientation)
    stored = Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = orientation
    tagged, upright = tmp_path / "tagged.png", tmp_path / "upright.png"
    stored.save(tagged, exif=exif)
    stored.transpose(TRANSPOSES[orientation]).save(upright)
    assert np.array_equal(decode_image(tagged), decode_image(upright))


def test_an_orientation_tag_of_one_changes_nothing(tmp_path: Path) -> None:
    stored = Image.fromarray(np.random.default_rng(1).integers(0, 256, (300, 400, 3), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 1
    tagged, plain = tmp_path / "tagged.png", tmp_path / "plain.png"
    stored.save(tagged, exif=exif)
    stored.save(plain)
    assert np.array_equal(decode_image(tagged), decode_image(plain))


@pytest.mark.parametrize(
    "size",
    # Landscape and portrait, upscaled and reduced, and shapes Pillow 13 resizes vertically
    # first (225×511, 257×1001): a crop computed any other way than "resize the whole image,
    # then cut the centre out" moves some values by 1 on noise like this.
    [(400, 300), (300, 400), (120, 90), (225, 511), (257, 1001), (1001, 257)],
)
def test_the_crop_is_the_centre_of_the_whole_resized_image_bit_for_bit(
    tmp_path: Path, size: tuple[int, int]
) -> None:
    width, height = size
    noise = np.random.default_rng(width * height).integers(0, 256, (height, width, 3), np.uint8)
    path = tmp_path / "noise.png"
    Image.fromarray(noise).save(path, compress_level=1)
    short = min(width, height)
    whole = Image.fromarray(noise).resize(
        (int(256 * width / short), int(256 * height / short)), Image.Resampling.BILINEAR
    )
    left, top = round((whole.width - 224) / 2), round((whole.height - 224) / 2)
    expected = np.asarray(whole.crop((left, top, left + 224, top + 224)))
    resized: list[Image.Image] = []
    assert np.array_equal(decode_image(path), expected)
    assert np.array_equal(decode_image(path, on_resized=resized.append), expected)
    assert np.array_equal(np.asarray(resized[0]), np.asarray(whole))  # the gallery's source
