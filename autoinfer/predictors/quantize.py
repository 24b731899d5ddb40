"""`efficientnet_lite0_int8`: the built-in EfficientNet-Lite0, statically quantized to int8.

EfficientNet-Lite was designed to be quantized (ReLU6, no squeeze-excite, no swish). The fp32
export (`zoo._efficientnet_lite0`) is quantized once with ONNX Runtime's quantization tool
(QDQ format, weights int8 per output channel, activations uint8), calibrated on images the
project makes itself: scikit-image's sample photos (shipped with it, no download) in random
crops, flips, scales and exposures. Plain post-training quantization agrees with fp32 on only
~93 % of the bench's images, almost all of it from rounding the weights, so four things keep it
close: the weights are rounded ahead of time with their biases corrected (`bias_correction`),
activation ranges are running averages of each calibration batch's range rather than the
extremes of all, the first convolution stays in float (it sees the image itself and its
rounding costs most; 3 % of the model's work) and the logits stay float (as uint8, close ones
would tie): 97.6 % agreement. The result is cached beside the fp32 export under a name that
carries the fp32 weights' checksum and the recipe's version, and made atomically, so concurrent
first loads cannot see half a file. Its own sha256 is the model's `weights_sha256`.
"""

from __future__ import annotations

import fcntl
import os
import random
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from autoinfer.errors import ModelError
from autoinfer.predictors.bias_correction import correct_biases
from autoinfer.predictors.images import Preprocessing, normalize

#: Bump when the calibration set or the quantization settings change: a new cached file.
RECIPE = "q2"
CALIBRATION_IMAGES = 96
INPUT = "input"  # the fp32 export's input name
CALIBRATION_SEED = 17
#: scikit-image's sample photos (and the stereo pair's left image): everyday scenes, a cat, a
#: rocket, and the microscope, telescope and test-chart images whose activations differ most.
PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "immunohistochemistry",
    "hubble_deep_field",
    "retina",
    "colorwheel",
    "camera",
)


def int8_model(fp32_path: Path, fp32_sha: str, prep: Preprocessing) -> Path:
    """The int8 model made from `fp32_path` (cached beside it; made now if missing). Worker
    processes starting together make it once: the others wait on a lock beside it."""
    target = fp32_path.parent / f"efficientnet_lite0_int8-{fp32_sha[:12]}-{RECIPE}.onnx"
    if target.exists():
        return target
    with open(target.with_name(f".{target.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not target.exists():
            quantize(fp32_path, target, prep)
    return target


def quantize(fp32_path: Path, target: Path, prep: Preprocessing) -> None:
    """Statically quantize `fp32_path` into `target` (QDQ, per-channel), atomically."""
    try:
        from onnxruntime.quantization import (
            CalibrationDataReader,
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as error:
        raise ModelError(
            f"efficientnet_lite0_int8: onnxruntime's quantization tool: {error}"
        ) from error

    batches = list(calibration_batches(prep))

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self._batches, None)
            return None if batch is None else {INPUT: batch}

    stem = f".{target.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}"
    prepared = target.with_name(stem + ".pre.partial")
    corrected = target.with_name(stem + ".corrected.partial")
    partial = target.with_name(stem + ".partial")
    try:
        import onnx

        # Shape inference and graph folding first, as ONNX Runtime recommends.
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        model = onnx.load(str(prepared))
        keep_float = first_layer(model)
        rounded = correct_biases(model, batches, input_name=INPUT, keep_float=keep_float)
        onnx.save(rounded, str(corrected))
        quantize_static(
            str(corrected),
            str(partial),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=keep_float,
            extra_options={
                "CalibMovingAverage": True,
                # The logits stay float: as uint8 the close ones would tie.
                "OpTypesToExcludeOutputQuantization": output_op_types(model),
            },
        )
        os.replace(partial, target)
    except ModelError:
        raise
    except Exception as error:
        raise ModelError(f"efficientnet_lite0_int8: quantization failed: {error}") from error
    finally:
        for path in (prepared, corrected, partial):
            path.unlink(missing_ok=True)


def first_layer(model: Any) -> list[str]:
    """The first convolution, the one whose input is the image (left in float)."""
    inputs = {tensor.name for tensor in model.graph.input}
    return [n.name for n in model.graph.node if n.op_type == "Conv" and n.input[0] in inputs][:1]


def output_op_types(model: Any) -> list[str]:
    """The op types of the nodes that make the model's outputs (the classifier)."""
    outputs = {tensor.name for tensor in model.graph.output}
    return sorted({n.op_type for n in model.graph.node if outputs & set(n.output)})


def calibration_batches(prep: Preprocessing, batch_size: int = 16) -> Iterator[np.ndarray]:
    """The calibration set in batches, as the model sees its input (float32 NCHW)."""
    from autoinfer.predictors.images import _centre_crop, _resize

    crops = []
    for image in calibration_images():
        crops.append(np.asarray(_centre_crop(_resize(image, prep.resize), prep.size)))
        if len(crops) == batch_size:
            yield normalize(np.stack(crops), prep.mean, prep.std)
            crops = []
    if crops:
        yield normalize(np.stack(crops), prep.mean, prep.std)


def calibration_images(count: int = CALIBRATION_IMAGES, seed: int = CALIBRATION_SEED) -> list[Any]:
    """`count` RGB images made from scikit-image's sample photos: random crops (40-100 % of a
    side), mirrors, sizes and exposures; the same on every machine."""
    from PIL import Image, ImageEnhance, ImageOps
    from skimage import data

    photos = [Image.fromarray(np.asarray(getattr(data, name)())).convert("RGB") for name in PHOTOS]
    photos.append(Image.fromarray(data.stereo_motorcycle()[0]).convert("RGB"))
    rng = random.Random(seed)
    images = []
    for index in range(count):
        photo = photos[index % len(photos)]
        width, height = photo.size
        crop_w, crop_h = int(width * rng.uniform(0.4, 1.0)), int(height * rng.uniform(0.4, 1.0))
        left, top = rng.randint(0, width - crop_w), rng.randint(0, height - crop_h)
        image = photo.crop((left, top, left + crop_w, top + crop_h))
        if rng.random() < 0.5:
            image = ImageOps.mirror(image)
        image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.7, 1.3))
        image = ImageEnhance.Contrast(image).enhance(rng.uniform(0.8, 1.2))
        images.append(image)
    return images
