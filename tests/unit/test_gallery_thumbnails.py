"""Gallery thumbnails made from the images as the predictor pool decodes them."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from autoinfer.gallery import THUMBNAIL_PX, Thumbnails


def picture(width: int, height: int) -> Image.Image:
    """A smooth picture (a thumbnail of noise would say nothing about its likeness)."""
    x = np.linspace(0, 255, width)[None, :]
    y = np.linspace(0, 255, height)[:, None]
    rgb = np.stack([x + 0 * y, y + 0 * x, (x + y) / 2], axis=-1)
    return Image.fromarray(rgb.astype(np.uint8))


@pytest.mark.parametrize("size", [(341, 256), (256, 455), (1000, 750), (161, 120), (700, 256)])
def test_a_thumbnail_is_a_jpeg_160_pixels_on_its_long_side_with_the_same_shape(
    size: tuple[int, int],
) -> None:
    thumbnails = Thumbnails()
    thumbnails("a.jpg", picture(*size))
    made = thumbnails.get("a.jpg")
    assert made is not None
    with Image.open(io.BytesIO(made)) as thumbnail:
        assert thumbnail.format == "JPEG"
        assert max(thumbnail.size) == THUMBNAIL_PX
        assert abs(min(thumbnail.size) - min(size) * THUMBNAIL_PX / max(size)) <= 0.5


def test_a_thumbnail_looks_like_its_image() -> None:
    image = picture(1000, 750)
    thumbnails = Thumbnails()
    thumbnails("a.jpg", image)
    with Image.open(io.BytesIO(thumbnails.get("a.jpg") or b"")) as thumbnail:
        shrunk = np.asarray(thumbnail.convert("RGB"), dtype=float)
    reference = np.asarray(image.resize(thumbnail.size, Image.Resampling.LANCZOS), dtype=float)
    assert np.abs(shrunk - reference).mean() < 3


def test_a_small_image_is_not_enlarged() -> None:
    thumbnails = Thumbnails()
    thumbnails("small.png", picture(120, 90))
    with Image.open(io.BytesIO(thumbnails.get("small.png") or b"")) as thumbnail:
        assert thumbnail.size == (120, 90)


def test_only_images_given_to_it_have_thumbnails() -> None:
    thumbnails = Thumbnails()
    thumbnails("a.jpg", picture(300, 200))
    assert thumbnails.get("b.jpg") is None
