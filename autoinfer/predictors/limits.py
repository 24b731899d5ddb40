"""What one image may cost a predictor worker: a pixel cap read from the header before
decoding, and an address-space bound on each worker process.

Pillow refuses images over ~179 MP outright and only warns above ~89 MP; a 13000×13000 PNG of
half a megabyte sits under both and takes a worker ~2.3 GB to decode. The cap (default 40 MP,
`predictors.max_image_pixels`) turns such an image into its own `error` prediction before a
pixel is decoded. The memory bound (`predictors.worker_memory_mb`, RLIMIT_DATA, set once the
model is loaded) is the second line: an allocation past it fails with MemoryError inside that
image's decode, which is again that image's error, instead of the kernel killing the worker
with the whole batch.
"""

from __future__ import annotations

import logging
import re
import resource
import warnings

from PIL import Image

log = logging.getLogger("autoinfer.predictors")

#: Images with more pixels than this (after JPEG draft scaling) are refused undecoded.
DEFAULT_MAX_PIXELS = 40_000_000
#: Each predictor worker process's data segment limit (heap and private mappings), in MiB.
DEFAULT_WORKER_MEMORY_MB = 4096
#: Room left above what a loaded model uses, whatever the configured limit.
MIN_HEADROOM_MB = 256


class TooManyPixels(ValueError):
    """An image whose header promises more pixels than the cap; the message is its reason."""


def check_pixels(image: Image.Image, max_pixels: int) -> None:
    """TooManyPixels naming the image's size and the cap, when it is over the cap."""
    width, height = image.size
    if width * height > max_pixels:
        raise TooManyPixels(over_the_cap(width * height, max_pixels))


def over_the_cap(pixels: int, max_pixels: int) -> str:
    """`image is 169 MP, over the 40 MP limit (predictors.max_image_pixels)`."""
    return (
        f"image is {_megapixels(pixels)} MP, over the {_megapixels(max_pixels)} MP limit "
        "(predictors.max_image_pixels)"
    )


def bomb_reason(error: Exception, max_pixels: int) -> str:
    """The reason for Pillow's own decompression-bomb refusal, in the cap's words
    (`image is 169 MP, over the 40 MP limit ...`); Pillow says the pixel count, not the size."""
    found = re.search(r"\((\d+) pixels\)", str(error))
    if found is None:
        return "image is too large (decompression bomb limit)"
    return over_the_cap(int(found.group(1)), max_pixels)


def limit_worker(max_pixels: int, megabytes: int | None) -> None:
    """In a predictor worker process whose model is loaded: Pillow's own bomb check moved up
    to the cap when the cap is above it (its warning an error), and the data segment
    (RLIMIT_DATA) bounded to `megabytes` (None: unbounded), but never below what the loaded
    model already uses plus MIN_HEADROOM_MB (a big model keeps room to work)."""
    Image.MAX_IMAGE_PIXELS = max(Image.MAX_IMAGE_PIXELS or 0, max_pixels)
    warnings.simplefilter("error", Image.DecompressionBombWarning)
    if megabytes is None:
        return
    limit = megabytes * 1024 * 1024
    in_use = _data_in_use()
    if in_use + MIN_HEADROOM_MB * 1024 * 1024 > limit:
        limit = in_use + MIN_HEADROOM_MB * 1024 * 1024
        log.warning(
            "predictor worker: the model uses %d MiB; memory limit raised from %d to %d MiB",
            in_use >> 20,
            megabytes,
            limit >> 20,
        )
    try:
        _, hard = resource.getrlimit(resource.RLIMIT_DATA)
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))
    except (ValueError, OSError) as error:  # not permitted here: run without the bound
        log.warning("predictor worker: cannot limit memory to %d MiB: %s", megabytes, error)


def _data_in_use() -> int:
    """This process's data segment now (VmData), in bytes; 0 when it cannot be read."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmData:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1e6:.0f}" if pixels >= 10_000_000 else f"{pixels / 1e6:.1f}"
