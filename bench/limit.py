"""The limit: the bare model loop in one process, no service.

The same runtime and session options as the pool's workers (`load_classifier` with the workers'
thread count), the same preprocessing (`decode_image` + `normalize`), the same batch size, over
the same images: decode a batch, run it, take the top 5, repeat. Nothing is written.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from autoinfer.predictors.images import Preprocessing, UnreadableImage, decode_image
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
        crops = _decoded(images[start : start + batch_size], prep)
        if crops:
            for row in classifier.predict_crops(np.stack(crops)):
                classifier.top5(row)
    return len(images) / (time.perf_counter() - started)


def measure_model_alone(
    images: Sequence[Path],
    cache_dir: Path,
    *,
    batch_size: int,
    threads: int,
    model: str = "efficientnet_lite0",
) -> float:
    """Images per second of the model alone: the same batches, decoded beforehand."""
    classifier = load_classifier(model, cache_dir, threads=threads)
    crops = _decoded(images, classifier.preprocessing)
    batches = [np.stack(crops[i : i + batch_size]) for i in range(0, len(crops), batch_size)]
    classifier.predict_crops(batches[0])
    started = time.perf_counter()
    for batch in batches:
        classifier.predict_crops(batch)
    return len(crops) / (time.perf_counter() - started)


def _decoded(images: Sequence[Path], prep: Preprocessing) -> list[np.ndarray]:
    """The crops of the images that decode, as the workers make them."""
    crops = []
    for path in images:
        try:
            crops.append(decode_image(path, prep.size, prep.resize))
        except UnreadableImage:
            continue
    return crops


def exported_model(cache_dir: Path) -> Path:
    """The ONNX export of the built-in model in `cache_dir` (exported now if it is not there)."""
    from autoinfer.predictors.zoo import _efficientnet_lite0

    return _efficientnet_lite0(cache_dir)[0]


def agreement(images: Sequence[Path], cache_dir: Path) -> dict[str, float]:
    """How often `efficientnet_lite0_int8` agrees with fp32 on `images` plus every real photo
    the tests use (the seed images and scikit-image's photos): top-1 agreement and the mean
    share of the fp32 top 5 that the int8 top 5 also holds."""
    from bench.images import real_photos

    fp32 = load_classifier("efficientnet_lite0", cache_dir, threads=1)
    int8 = load_classifier("efficientnet_lite0_int8", cache_dir, threads=1)
    prep = fp32.preprocessing
    crops = [decode_image(path, prep.size, prep.resize) for path in images]
    with tempfile.TemporaryDirectory() as folder:
        photos = real_photos(Path(folder))
        crops += [decode_image(path, prep.size, prep.resize) for path in photos]
    top1 = overlap = 0.0
    for start in range(0, len(crops), 32):
        batch = np.stack(crops[start : start + 32])
        a, b = fp32.predict_crops(batch), int8.predict_crops(batch)
        top1 += float((a.argmax(1) == b.argmax(1)).sum())
        five_a, five_b = np.argsort(-a, 1)[:, :5], np.argsort(-b, 1)[:, :5]
        overlap += sum(len(set(x) & set(y)) / 5 for x, y in zip(five_a, five_b, strict=True))
    return {"top1": top1 / len(crops), "top5": overlap / len(crops), "images": len(crops)}
