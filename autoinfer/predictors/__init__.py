"""Built-in image classifiers kept warm in worker processes, fed in batches, shared by jobs.

Importing this package loads neither PyTorch nor ONNX Runtime; models load on first use.
"""

from autoinfer.predictors.classifier import (
    Classifier,
    Label,
    classify_folder,
    prediction_file_name,
    prediction_paths,
)
from autoinfer.predictors.images import (
    IMAGE_EXTENSIONS,
    Preprocessing,
    UnreadableImage,
    decode_image,
    find_images,
    load_image,
)
from autoinfer.predictors.pool import PredictorPool
from autoinfer.predictors.zoo import BUILTIN_MODELS, load_classifier, resolve_source

__all__ = [
    "BUILTIN_MODELS",
    "IMAGE_EXTENSIONS",
    "Classifier",
    "Label",
    "PredictorPool",
    "Preprocessing",
    "UnreadableImage",
    "classify_folder",
    "decode_image",
    "find_images",
    "load_classifier",
    "load_image",
    "prediction_file_name",
    "prediction_paths",
    "resolve_source",
]
