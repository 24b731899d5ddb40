"""Resume instead of restart: a built-in model job's predictions, kept across its attempts.

While a built-in model classifies a job of `MIN_IMAGES` images or more, each batch of
predictions is appended (flushed and fsynced) to `<scratch>/<job id>.resume/predictions.jsonl`,
after a first line that fingerprints the work: the model (source, labels) and the input
(every image's path and size). When an attempt is lost — the service killed, its lease
expired, a shutdown that handed the job back — the job's next attempt on this machine reads
the file back, writes those predictions as they were, classifies only the other images and
logs `resumed: N of M images already done`.

The result is the uninterrupted run's: prediction file names are computed over all the images
(their collision rules depend on the whole set), each stored record is written the way the
pool writes it (same bytes), and the manifest counts every image. A checkpoint whose
fingerprint differs (another input, another model) is started afresh; the folder goes when the
job ends for good (`discard`). A job taken over by another replica starts from the beginning
there (the checkpoint is in this machine's scratch folder).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from autoinfer.predictors.classifier import prediction_paths, write_manifest, write_prediction
from autoinfer.predictors.images import find_images

FILE_NAME = "predictions.jsonl"
SUFFIX = ".resume"
#: A job of fewer images keeps no predictions: a lost attempt of it redoes about two of the
#: pool's batches, while keeping them would cost every small job a folder, a file, fsyncs
#: and a removal in the service process (a third of a millisecond of a 5-image job's CPU).
MIN_IMAGES = 32

Classify = Callable[..., dict]
OnItems = Callable[[list[dict[str, Any]]], None]


def checkpoint_folder(scratch_root: Path, job_id: str) -> Path:
    """Where a job's predictions are kept between attempts (beside the attempts' folders)."""
    return scratch_root / f"{job_id}{SUFFIX}"


def resumed_job(folder_name: str) -> str | None:
    """The job whose kept predictions a scratch folder holds; None for other folders."""
    return folder_name.removesuffix(SUFFIX) if folder_name.endswith(SUFFIX) else None


def discard(scratch_root: Path, job_id: str) -> None:
    """Forget a job's kept predictions (it ended for good)."""
    shutil.rmtree(checkpoint_folder(scratch_root, job_id), ignore_errors=True)


def fingerprint(
    model_source: str, labels_uri: str | None, data_dir: Path, images: Sequence[Path]
) -> str:
    """What the kept predictions are valid for: the model and every input image's path and size."""
    digest = hashlib.sha256(json.dumps([model_source, labels_uri]).encode())
    for image in images:
        digest.update(
            f"\0{image.relative_to(data_dir).as_posix()}\0{image.stat().st_size}".encode()
        )
    return digest.hexdigest()


class Checkpoint:
    """The predictions file of one job: a fingerprint line, then one prediction per line."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / FILE_NAME

    def load(self, expected: str) -> dict[str, dict[str, Any]]:
        """The kept predictions by file, if they were made for `expected`; else none (and the
        file is started afresh)."""
        done: dict[str, dict[str, Any]] = {}
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except (FileNotFoundError, UnicodeDecodeError):
            lines = []
        if lines and _parse(lines[0]).get("fingerprint") == expected:
            for line in lines[1:]:
                prediction = _parse(line)  # a line torn by the crash parses as {}
                if isinstance(prediction.get("file"), str):
                    done[prediction["file"]] = prediction
            return done
        self.folder.mkdir(parents=True, exist_ok=True)
        self._write([{"fingerprint": expected}], mode="w")
        return done

    def append(self, predictions: Sequence[Mapping[str, Any]]) -> None:
        """Keep a batch of predictions, durably, before the pool moves on."""
        self._write(predictions, mode="a")

    def _write(self, records: Sequence[Mapping[str, Any]], *, mode: str) -> None:
        with open(self.path, mode, encoding="utf-8") as handle:
            handle.write("".join(json.dumps(record) + "\n" for record in records))
            handle.flush()
            os.fsync(handle.fileno())


def classify_resuming(
    classify: Classify,
    checkpoint: Path,
    model_source: str,
    data_dir: Path,
    output_dir: Path,
    *,
    workdir: Path,
    log: Callable[[str], None],
    labels_uri: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    on_items: OnItems | None = None,
    **options: Any,
) -> dict:
    """`classify(model_source, data_dir, output_dir, ...)` (the predictor pool's), keeping its
    predictions in `checkpoint` and skipping those an earlier attempt kept; the manifest."""
    images = find_images(data_dir)

    def classify_all(items: OnItems | None) -> dict:
        """Every image in one call, its prediction records going to `items`."""
        return classify(
            model_source,
            data_dir,
            output_dir,
            labels_uri=labels_uri,
            progress=progress,
            on_items=items,
            **options,
        )

    if len(images) < MIN_IMAGES:
        return classify_all(on_items)
    files = [image.relative_to(data_dir).as_posix() for image in images]
    kept = Checkpoint(checkpoint)
    done = kept.load(fingerprint(model_source, labels_uri, data_dir, images))
    done = {file: done[file] for file in files if file in done}

    def record(predictions: list[dict[str, Any]]) -> None:
        kept.append(predictions)
        if on_items is not None:
            on_items(predictions)

    if not done:
        return classify_all(record)

    log(f"resumed: {len(done):,} of {len(images):,} images already done")
    names = dict(zip(files, prediction_paths(images, data_dir), strict=True))
    output_dir.mkdir(parents=True, exist_ok=True)
    for file, prediction in done.items():
        write_prediction(output_dir, names[file], prediction)
    if on_items is not None:
        on_items(list(done.values()))
    if progress is not None:
        progress(len(done), len(images))

    # The rest, linked into a folder of their own under the same relative paths; their
    # prediction files are then renamed to the names they have among all the images.
    rest_in, rest_out = workdir / "resume-input", workdir / "resume-output"
    for folder in (rest_in, rest_out):
        shutil.rmtree(folder, ignore_errors=True)
    rest_in.mkdir(parents=True)
    for image, file in zip(images, files, strict=True):
        if file not in done:
            _link(image, rest_in / file)

    def shifted(count: int, _total: int) -> None:
        if progress is not None:
            progress(len(done) + count, len(images))

    manifest = classify(
        model_source,
        rest_in,
        rest_out,
        labels_uri=labels_uri,
        progress=shifted,
        on_items=record,
        **options,
    )
    rest = find_images(rest_in)
    for image, name in zip(rest, prediction_paths(rest, rest_in), strict=True):
        target = output_dir / names[image.relative_to(rest_in).as_posix()]
        target.parent.mkdir(parents=True, exist_ok=True)
        (rest_out / name).replace(target)
    errors = sum("error" in prediction for prediction in done.values()) + manifest["errors"]
    shutil.rmtree(rest_in, ignore_errors=True)
    shutil.rmtree(rest_out, ignore_errors=True)
    return write_manifest(output_dir, manifest["model"], len(images), errors)


def _link(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:  # another file system, or links refused: a copy does too
        shutil.copy2(source, target)


def _parse(line: str) -> dict[str, Any]:
    try:
        value = json.loads(line)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
