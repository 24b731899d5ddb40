"""Finding images in a data folder and turning each into the classifier's input tensor.

Decoding is split in two: `decode_image` (file → centre crop as uint8 HWC, the expensive part,
which the pool's worker processes and the Ray pool's decode threads run) and `normalize`
(uint8 → float32 NCHW, cheap, run next to the model). `load_image` does both for one image.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from autoinfer.errors import AutoInferError
from autoinfer.predictors.limits import (
    DEFAULT_MAX_PIXELS,
    TooManyPixels,
    bomb_reason,
    check_pixels,
)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_SKIPPED_DIRS = frozenset({"__MACOSX"})


class UnreadableImage(AutoInferError):
    """An image file could not be decoded; `reason` is the short text for its prediction file."""

    code = "unreadable_image"
    status_code = 422

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class Preprocessing:
    """How a model wants its input: resize the short side to `resize`, centre-crop `size`."""

    size: int = 224
    resize: int = 256
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    @classmethod
    def for_size(cls, size: int) -> Preprocessing:
        """The ImageNet convention for a crop size: resize to size × 256/224."""
        return cls(size=size, resize=round(size * 256 / 224))


def find_images(folder: Path) -> list[Path]:
    """Every image below `folder`, recursively, sorted by relative path.

    Any case of the known extensions counts; hidden files and folders and `__MACOSX` (the
    resource forks macOS puts in zip files) are skipped; symlinked folders are not followed.
    """
    found: list[Path] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in _SKIPPED_DIRS]
        for name in files:
            if name.startswith("."):
                continue
            if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                found.append(Path(root, name))
    return sorted(found, key=lambda path: path.relative_to(folder).as_posix())


def decode_image(
    path: Path,
    size: int = 224,
    resize: int | None = None,
    *,
    on_resized: Callable[[Image.Image], None] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """The image's centre crop as uint8 RGB, shape (size, size, 3).

    The short side is resized to `resize` (bilinear, antialiased) and the centre `size`² kept,
    as torchvision's Resize + CenterCrop do. JPEGs are decoded at a reduced scale when the
    image is still at least `resize` pixels on its short side (libjpeg's DCT scaling), which makes
    big photos several times cheaper. UnreadableImage with a short reason when it can't be read.
    `on_resized`, if given, gets the whole resized image (RGB) before it is cropped: a gallery
    thumbnail made from it costs a fraction of decoding the file again. An image of more
    than `max_pixels` (read from its header, after JPEG draft scaling) is refused undecoded.
    """
    resize = resize or round(size * 256 / 224)
    try:
        with Image.open(path) as image:
            image.draft("RGB", (resize, resize))
            check_pixels(image, max_pixels)  # from the header: nothing decoded yet
            ImageOps.exif_transpose(image, in_place=True)  # (no copy when there is no tag)
            rgb = _to_rgb(image)
            resized = _resize(rgb, resize)
            crop = _centre_crop(resized, size)
        if on_resized is not None:
            on_resized(resized)
    except UnreadableImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise UnreadableImage(path, bomb_reason(error, max_pixels)) from None
    except (
        OSError,
        ValueError,
        SyntaxError,
        MemoryError,
    ) as error:
        raise UnreadableImage(path, _reason(error, path)) from None
    return np.asarray(crop, dtype=np.uint8)


def normalize(
    crops: np.ndarray,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> np.ndarray:
    """uint8 crops (N, H, W, 3) or (H, W, 3) → float32 (N, 3, H, W) or (3, H, W), scaled to [0, 1]
    and standardised per channel."""
    scale = np.asarray([1.0 / (255.0 * s) for s in std], dtype=np.float32).reshape(3, 1, 1)
    shift = np.asarray([m / s for m, s in zip(mean, std, strict=True)], dtype=np.float32)
    shift = shift.reshape(3, 1, 1)
    channels_first = np.moveaxis(crops, -1, -3)  # a view: each uint8 pixel is read once
    tensor = np.empty(channels_first.shape, dtype=np.float32)
    # uint8 → float32 is exact, then x·scale − shift in float32: the same bits as converting,
    # scaling and shifting in three passes, at a fifth of the cost.
    np.multiply(channels_first, scale, out=tensor)
    np.subtract(tensor, shift, out=tensor)
    return tensor


def load_image(
    path: Path,
    size: int = 224,
    *,
    resize: int | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> np.ndarray:
    """One image as the classifier's input: float32 (3, size, size); UnreadableImage if it
    cannot be decoded."""
    return normalize(decode_image(path, size, resize), mean, std)


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode → RGB: transparency is composited on white, 16-bit and float greys are
    scaled down rather than clipped."""
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        image.mode == "P" and "transparency" in image.info
    ):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if image.mode.startswith("I") or image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        top = values.max(initial=0.0)
        if image.mode == "F" and top <= 1.0:
            values = values * 255.0
        elif top > 255.0:
            values = values / 257.0
        grey = Image.fromarray(np.clip(values, 0, 255).astype(np.uint8), mode="L")
        return grey.convert("RGB")
    return image.convert("RGB") if image.mode != "RGB" else image


def _resize(image: Image.Image, resize: int) -> Image.Image:
    """The short side to `resize`. The whole image is resized, then cropped, exactly as
    torchvision does. Resizing only the kept box (`resize(box=...)`, same sample positions)
    would make the bench's JPEGs decode in about 0.8 × the time, but Pillow takes the box as
    float32: 1 % of the crop's values move by 1, which reorders the top 5 of 17 of the 500
    bench images (fp32, confidences up to 0.03 apart) and changes int8's top 1 on 3 % of them
    and on 1 of the 9 real photos. Measured and left out."""
    width, height = image.size
    if width <= height:
        new_width, new_height = resize, int(resize * height / width)
    else:
        new_width, new_height = int(resize * width / height), resize
    return image.resize((new_width, new_height), Image.Resampling.BILINEAR)


def _centre_crop(resized: Image.Image, size: int) -> Image.Image:
    new_width, new_height = resized.size
    crop = min(size, new_width, new_height)
    left = round((new_width - crop) / 2.0)
    top = round((new_height - crop) / 2.0)
    out = resized.crop((left, top, left + crop, top + crop))
    if crop != size:  # an image smaller than the crop: pad like torchvision's CenterCrop does
        padded = Image.new("RGB", (size, size))
        padded.paste(out, ((size - crop) // 2, (size - crop) // 2))
        out = padded
    return out


def _reason(error: BaseException, path: Path) -> str:
    """A short, path-free reason: 'cannot identify image file', 'image file is truncated'."""
    if isinstance(error, UnidentifiedImageError):
        return "cannot identify image file"
    if isinstance(error, TooManyPixels):
        return str(error)
    if isinstance(error, MemoryError):
        return "image is too large to decode within the worker's memory limit"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror.lower()
    text = str(error).replace(repr(str(path)), "").replace(str(path), "").strip()
    text = re.sub(r"\s*\(.*\)$", "", text.splitlines()[0] if text else "")
    return text or type(error).__name__
