"""The limit: the bare model loop in one process, no service.

The same runtime and session options as the pool's workers (`load_classifier` with the workers'
thread count), the same preprocessing (`decode_image` + `normalize`), the same batch size, over
the same images: decode a batch, run it, take the top 5, repeat. Nothing is written.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from autoinfer.predictors.images import UnreadableImage, decode_image
from autoinfer.predictors.zoo import load_classifier


def measure_limit(
    images: Sequence[Path],
    cache_dir: Path,
    *,
    batch_size: int,
    threads: int,
    model: str = "efficientnet_lite0",
) -> float:
    """Images per second of the bare loop over `images` (after one warm-up batch)."""
    classifier = load_classifier(model, cache_dir, threads=threads)
    prep = classifier.preprocessing
    warmup = [decode_image(path, prep.size, prep.resize) for path in images[:batch_size]]
    classifier.predict_crops(np.stack(warmup))
    started = time.perf_counter()
    for start in range(0, len(images), batch_size):
        crops = []
        for path in images[start : start + batch_size]:
            try:
                crops.append(decode_image(path, prep.size, prep.resize))
            except UnreadableImage:
                continue
        if crops:
            for row in classifier.predict_crops(np.stack(crops)):
                classifier.top5(row)
    return len(images) / (time.perf_counter() - started)


def exported_model(cache_dir: Path) -> Path:
    """The ONNX export of the built-in model in `cache_dir` (exported now if it is not there)."""
    from autoinfer.predictors.zoo import _efficientnet_lite0

    return _efficientnet_lite0(cache_dir)[0]
