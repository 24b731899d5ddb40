"""One `classify` call's images and the prediction files written for them, as results arrive.

Both pools (`predictors.pool`, the local warm workers, and `predictors.ray_pool`, the model
actors) find a job's images and write its results the same way through `PredictionWriter`:
one prediction file per image, `on_items` with each batch of records, `progress(done, total)`,
and the manifest at the end. Only how the images reach a model differs between them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from autoinfer.predictors.classifier import prediction_paths, write_manifest, write_prediction
from autoinfer.predictors.images import find_images

#: `progress(done, total)`: images finished so far, out of all of the job's.
Progress = Callable[[int, int], None]
#: Receives each batch of prediction records (`{"file", "classes"}` or `{"file", "error"}`).
OnItems = Callable[[list[dict[str, Any]]], None]


class PredictionWriter:
    """The images below `data_dir` and where their predictions go below `output_dir` (made
    here); `write` records results from the calling thread, `manifest` ends the job."""

    def __init__(
        self,
        data_dir: Path,
        output_dir: Path,
        *,
        progress: Progress | None = None,
        on_items: OnItems | None = None,
    ) -> None:
        self.data_dir, self.output_dir = Path(data_dir), Path(output_dir)
        self.images = find_images(self.data_dir)
        #: Names relative to the data folder, as the prediction files give them.
        self.files = [image.relative_to(self.data_dir).as_posix() for image in self.images]
        #: Prediction file paths relative to the output folder.
        self.outputs = prediction_paths(self.images, self.data_dir)
        self.progress, self.on_items = progress, on_items
        self.done = self.errors = 0
        self.output_dir.mkdir(parents=True, exist_ok=True)

    @property
    def total(self) -> int:
        return len(self.images)

    def write(self, results: Iterable[tuple[int, dict[str, Any]]]) -> None:
        """Write each image's `{"classes": ...}` or `{"error": reason}` (by the image's index)
        as its prediction file, then tell `on_items` and `progress`."""
        written = []
        for index, record in results:
            prediction = {"file": self.files[index], **record}
            write_prediction(self.output_dir, self.outputs[index], prediction)
            written.append(prediction)
            self.errors += "error" in record
        if not written:
            return
        if self.on_items is not None:
            self.on_items(written)
        self.done += len(written)
        if self.progress is not None:
            self.progress(self.done, self.total)

    def manifest(self, info: dict[str, Any]) -> dict[str, Any]:
        """Write and return `manifest.json` for the model `info` describes."""
        return write_manifest(self.output_dir, info, self.total, self.errors)
