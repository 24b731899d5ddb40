"""An image classifier on ONNX Runtime, and the prediction files it writes.

A prediction file is `<image stem>_pred.json` holding `{"file": ..., "classes": [...]}` (top 5,
highest first) or `{"file": ..., "error": "<reason>"}`; `manifest.json` describes the run.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from autoinfer.predictors.images import Preprocessing, UnreadableImage, decode_image, find_images
from autoinfer.predictors.images import normalize as normalize_crops

MANIFEST_NAME = "manifest.json"
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Label:
    """One output class: `id` is the WordNet id for ImageNet models, else the user's id/index."""

    id: str
    name: str


class Classifier:
    """A loaded ONNX image classifier. Build it with `autoinfer.predictors.load_classifier`."""

    def __init__(
        self,
        session: Any,
        labels: Sequence[Label],
        info: dict[str, Any],
        preprocessing: Preprocessing,
        channels_last: bool = False,
    ) -> None:
        self.session = session
        self.labels = list(labels)
        self.info = info  # {"name", "weights_sha256", "runtime", "input_size"}
        self.preprocessing = preprocessing
        self._channels_last = channels_last
        self._input = session.get_inputs()[0].name

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities (N, classes) for a float32 batch (N, 3, H, W) from `normalize`."""
        if self._channels_last:
            batch = np.ascontiguousarray(np.moveaxis(batch, 1, -1))
        (out,) = self.session.run(None, {self._input: batch.astype(np.float32, copy=False)})
        out = np.asarray(out, dtype=np.float32).reshape(len(batch), -1)
        if out.min(initial=0.0) >= 0.0 and np.allclose(out.sum(axis=1), 1.0, atol=1e-3):
            return out  # the model ends in a softmax already
        out = np.exp(out - out.max(axis=1, keepdims=True))
        return out / out.sum(axis=1, keepdims=True)

    def predict_crops(self, crops: np.ndarray) -> np.ndarray:
        """Probabilities for uint8 crops (N, H, W, 3) from `decode_image`."""
        prep = self.preprocessing
        return self.predict(normalize_crops(crops, prep.mean, prep.std))

    def top5(self, probs: np.ndarray, k: int = 5) -> list[dict[str, Any]]:
        """The `k` likeliest classes of one image: `{"id", "name", "confidence"}`, highest first,
        confidence rounded to 3 decimals."""
        order = np.argsort(-probs, kind="stable")[:k]
        return [
            {
                "id": self.labels[i].id,
                "name": self.labels[i].name,
                "confidence": round(float(probs[i]), 3),
            }
            for i in order
        ]


def prediction_file_name(image: Path) -> str:
    """`photos/cat.JPEG` → `cat_pred.json`."""
    return f"{image.stem}_pred.json"


def prediction_paths(images: Sequence[Path], data_dir: Path) -> list[str]:
    """Where each image's prediction goes, relative to the output folder.

    Normally `<stem>_pred.json` at the top. Images whose names would collide (the same stem in
    different sub-folders, compared case-insensitively) keep their sub-folder:
    `a/x_pred.json`, `b/x_pred.json`; the same stem twice in one folder keeps the extension:
    `x.png_pred.json`.
    """
    relative = [image.relative_to(data_dir) for image in images]
    flat = [prediction_file_name(path) for path in relative]
    counts = Counter(name.lower() for name in flat)
    nested = [
        name if counts[name.lower()] == 1 else (path.parent / name).as_posix()
        for path, name in zip(relative, flat, strict=True)
    ]
    counts = Counter(name.lower() for name in nested)
    return [
        name if counts[name.lower()] == 1 else (path.parent / f"{path.name}_pred.json").as_posix()
        for path, name in zip(relative, nested, strict=True)
    ]


def write_prediction(output_dir: Path, name: str, record: dict[str, Any]) -> None:
    """Write one prediction file (`record` is `{"file", "classes"}` or `{"file", "error"}`)."""
    path = output_dir / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record) + "\n")


def write_manifest(output_dir: Path, info: dict[str, Any], images: int, errors: int) -> dict:
    """Write and return `manifest.json`: the model's identity and what the run produced."""
    manifest = {
        "model": {key: info[key] for key in ("name", "weights_sha256", "runtime", "input_size")},
        "images": images,
        "errors": errors,
        "created": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    }
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def classify_folder(
    classifier: Classifier,
    data_dir: Path,
    output_dir: Path,
    progress: Progress | None = None,
    *,
    batch_size: int = 8,
) -> dict[str, Any]:
    """Classify every image below `data_dir` in this process, one step after another.

    The simple path (and the baseline the pool is measured against): decode a few images, run
    them, write their files, repeat. Returns the manifest.
    """
    images = find_images(data_dir)
    names = prediction_paths(images, data_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    prep = classifier.preprocessing
    done = errors = 0
    for start in range(0, len(images), batch_size):
        crops: list[np.ndarray] = []
        decoded: list[int] = []
        for index in range(start, min(start + batch_size, len(images))):
            record: dict[str, Any] = {"file": images[index].relative_to(data_dir).as_posix()}
            try:
                crops.append(decode_image(images[index], prep.size, prep.resize))
                decoded.append(index)
            except UnreadableImage as error:
                write_prediction(output_dir, names[index], {**record, "error": error.reason})
                errors += 1
        if crops:
            probs = classifier.predict_crops(np.stack(crops))
            for index, row in zip(decoded, probs, strict=True):
                file = images[index].relative_to(data_dir).as_posix()
                write_prediction(
                    output_dir, names[index], {"file": file, "classes": classifier.top5(row)}
                )
        done = min(start + batch_size, len(images))
        if progress is not None:
            progress(done, len(images))
    return write_manifest(output_dir, classifier.info, len(images), errors)
