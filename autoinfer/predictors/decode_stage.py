"""A worker process's decode stage: files → centre crops (and gallery thumbnails), serially or
on a pool of threads, and the model run over a decoded batch.

A CPU worker decodes its batch in its own thread and then runs the model: the pool has a worker
per core, so the cores are busy either way. A CUDA worker is alone with its GPU: it decodes on
`threads` threads (Pillow releases the GIL while it decodes and resizes), and takes the next
batch off its pipe as soon as it arrives (`serve_pipelined`), so the next batch decodes while the
GPU runs this one. Either way every file gets its record in order: `{"classes": top-5}` once
classified, or `{"error": why}` for a file that could not be decoded.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from autoinfer.gallery import encode_thumbnail
from autoinfer.predictors.images import Preprocessing, UnreadableImage, decode_image
from autoinfer.predictors.limits import DEFAULT_MAX_PIXELS

if TYPE_CHECKING:
    from autoinfer.predictors.classifier import Classifier

#: One file decoded: its crop (None when it could not be), its error record, its thumbnail.
DecodedFile = tuple[np.ndarray | None, dict[str, Any] | None, bytes | None]
Results = list[tuple[dict[str, Any], bytes | None]]


@dataclass
class DecodedBatch:
    """A batch's files decoded: a record per file (errors filled in), thumbnails, and the crops
    of the decodable files with their positions in the batch."""

    records: list[dict[str, Any]]
    jpegs: list[bytes | None]
    crops: list[np.ndarray]
    indexes: list[int]


def decode_file(
    path: str,
    wants_thumbnail: bool,
    prep: Preprocessing,
    max_pixels: int,
    *,
    beside_others: bool = False,
) -> DecodedFile | None:
    """Decode one file: (crop, None, thumbnail JPEG or None), or (None, {"error": why}, None).
    `beside_others`: None instead when it ran out of memory (the worker's bound is shared by
    the files decoding at once), to be decoded again alone."""
    resized: list[Image.Image] = []
    try:
        crop = decode_image(
            Path(path),
            prep.size,
            prep.resize,
            on_resized=resized.append if wants_thumbnail else None,
            max_pixels=max_pixels,
        )
    except UnreadableImage as error:
        if beside_others and isinstance(error.__context__, MemoryError):
            return None
        return None, {"error": error.reason}, None
    except Exception as error:  # noqa: BLE001 - a decoder's failure is the file's, not the batch's
        if beside_others and isinstance(error, MemoryError):
            return None
        return None, {"error": f"cannot decode: {type(error).__name__}: {error}"}, None
    return crop, None, encode_thumbnail(resized[0]) if resized else None


def gather(files: Sequence[DecodedFile]) -> DecodedBatch:
    batch = DecodedBatch([{} for _ in files], [None] * len(files), [], [])
    for index, (crop, error, jpeg) in enumerate(files):
        if crop is None:
            batch.records[index] = error or {"error": "cannot decode"}
            continue
        batch.crops.append(crop)
        batch.indexes.append(index)
        batch.jpegs[index] = jpeg
    return batch


class DecodeStage:
    """Decodes batches of files on `threads` threads; with 1, in the calling thread."""

    def __init__(
        self, prep: Preprocessing, threads: int = 1, *, max_pixels: int = DEFAULT_MAX_PIXELS
    ) -> None:
        if threads < 1:
            raise ValueError("a decode stage needs at least 1 thread")
        self.prep = prep
        self.threads = threads
        self.max_pixels = max_pixels
        self._executor = (
            ThreadPoolExecutor(threads, thread_name_prefix="autoinfer-decode")
            if threads > 1
            else None
        )

    def submit(
        self, paths: Sequence[str], thumbnails: Sequence[bool]
    ) -> Callable[[], DecodedBatch]:
        """Start decoding a batch; call the result to wait for it. With 1 thread the batch is
        decoded here, before this returns."""
        if len(paths) != len(thumbnails):
            raise ValueError(f"{len(paths)} paths but {len(thumbnails)} thumbnail flags")
        if self._executor is None:
            pairs = zip(paths, thumbnails, strict=True)
            decoded = gather([self._alone(path, wants) for path, wants in pairs])
            return lambda: decoded
        futures: list[Future[DecodedFile | None]] = [
            self._executor.submit(
                decode_file, path, wants, self.prep, self.max_pixels, beside_others=True
            )
            for path, wants in zip(paths, thumbnails, strict=True)
        ]

        def result() -> DecodedBatch:
            files = [future.result() for future in futures]
            # A file that ran out of memory beside others: once more, alone in this thread.
            return gather(
                [
                    self._alone(path, wants) if file is None else file
                    for path, wants, file in zip(paths, thumbnails, files, strict=True)
                ]
            )

        return result

    def _alone(self, path: str, wants_thumbnail: bool) -> DecodedFile:
        decoded = decode_file(path, wants_thumbnail, self.prep, self.max_pixels)
        assert decoded is not None
        return decoded

    def decode(self, paths: Sequence[str], thumbnails: Sequence[bool]) -> DecodedBatch:
        return self.submit(paths, thumbnails)()

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)


def run_model(classifier: Classifier, batch: DecodedBatch) -> Results:
    """The decodable files run through the model as one batch; per file (record, thumbnail)."""
    records = list(batch.records)
    if batch.crops:
        rows = classifier.predict_crops(np.stack(batch.crops))
        for index, row in zip(batch.indexes, rows, strict=True):
            records[index] = {"classes": classifier.top5(row)}
    return list(zip(records, batch.jpegs, strict=True))


def serve_pipelined(conn: Connection, classifier: Classifier, stage: DecodeStage) -> None:
    """Answer batches as `worker.serve` does, in order, but take each batch off the pipe as soon
    as it is there and start decoding it, so that it decodes while the model runs the one
    before. None or a closed pipe ends it once the batches taken are answered."""
    pending: deque[Callable[[], DecodedBatch]] = deque()
    ending = False

    def take(block: bool) -> None:
        nonlocal ending
        while not ending and (block or conn.poll()):
            block = False
            try:
                batch = conn.recv()
            except (EOFError, OSError):
                batch = None
            if batch is None:
                ending = True
                return
            pending.append(stage.submit(*batch))

    while True:
        take(block=not pending)
        if not pending:
            return
        try:
            decoded = pending.popleft()()
            take(block=False)  # what came while this batch decoded starts decoding now
            reply: tuple[str, Any] = ("ok", run_model(classifier, decoded))
        except Exception as error:  # noqa: BLE001 - reported to the parent, which raises it
            reply = ("error", f"{type(error).__name__}: {error}")
        try:
            conn.send(reply)
        except OSError:
            return
