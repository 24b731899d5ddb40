"""The `poll` source: list a bucket prefix every `interval_s` and report what is new.

Works through the storage interface, so it serves local stores and S3 alike. Its cursor is
a table of the keys it has reported (with their ETags), scoped to the source's bucket and
prefix: S3 lists keys in lexicographic order, not by time, so a "last modified" watermark
would miss objects written late under early names. With `backfill: false`, the objects
present at the very first poll are recorded as seen without events; with `true` they are
reported like new ones.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

from autoinfer.errors import EventError, StorageError
from autoinfer.events.model import S3Event, object_created
from autoinfer.events.source import Ingest, Source
from autoinfer.inbox import SeenObject, SourceCursor
from autoinfer.storage.base import ObjectInfo
from autoinfer.storage.registry import StorageRegistry
from autoinfer.triggers import Locator

log = logging.getLogger("autoinfer.events.poll")

BATCH = 500


class PollSource(Source):
    """Reports objects under `bucket/prefix` that its cursor has not seen (or saw changed)."""

    def __init__(
        self,
        name: str,
        storage: StorageRegistry,
        locator: Locator,
        bucket: str,
        prefix: str,
        ingest: Ingest,
        cursor: SourceCursor,
        *,
        interval_s: float = 30.0,
        backfill: bool = False,
    ) -> None:
        self.name = name
        self.storage = storage
        self.locator = locator
        self.bucket = bucket
        self.prefix = prefix
        self.ingest = ingest
        self.cursor = cursor
        self.interval_s = interval_s
        self.backfill = backfill
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"{self.name}-poll", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except StorageError as error:
                log.warning(
                    "%s: listing failed, retrying in %s s: %s", self.name, self.interval_s, error
                )
            except Exception:
                log.exception("%s: poll failed, retrying in %s s", self.name, self.interval_s)
            self._stop.wait(self.interval_s)

    def poll_once(self) -> int:
        """List the prefix once, report what is new or changed; returns how many were reported."""
        listed = dict(self._list())
        seen = self.cursor.seen(self.bucket)
        if not self.cursor.started() and not self.backfill:
            self.cursor.remember((self.bucket, key, _state(info)) for key, info in listed.items())
            self.cursor.mark_scanned()
            log.info("%s: first poll: %d existing objects recorded as seen", self.name, len(listed))
            return 0
        changed = [
            (key, info)
            for key, info in listed.items()
            if seen.get((self.bucket, key)) != _state(info)
        ]
        reported = 0
        for start in range(0, len(changed), BATCH):
            batch = changed[start : start + BATCH]
            events = [event for event in (self._event(key, info) for key, info in batch) if event]
            self.ingest(events, self.name)
            self.cursor.remember((self.bucket, key, _state(info)) for key, info in batch)
            reported += len(events)
        gone = [place for place in seen if place[1] not in listed]
        if gone:
            self.cursor.forget(gone)
        self.cursor.mark_scanned()
        return reported

    def _list(self) -> Iterator[tuple[str, ObjectInfo]]:
        """(bucket key, info) of every object under the prefix; folder markers skipped."""
        folder = self.prefix[: self.prefix.rfind("/") + 1]
        uri = (
            self.locator.uri_for(self.bucket, folder)
            if folder
            else self.locator.bucket_uri(self.bucket)
        )
        for info in self.storage.for_uri(uri).list(uri):
            key = folder + info.key
            if key.startswith(self.prefix) and not key.endswith("/"):
                yield key, info

    def _event(self, key: str, info: ObjectInfo) -> S3Event | None:
        try:
            return object_created(
                self.bucket,
                key,
                size=info.size,
                etag=info.etag.strip('"') if info.etag else None,
                modified=info.modified,
                version_id=info.version_id,
                flavour="local" if info.uri.startswith("file:") else "aws",
            )
        except EventError as error:
            log.warning("%s: skipping %s/%s: %s", self.name, self.bucket, key, error)
            return None


def _state(info: ObjectInfo) -> SeenObject:
    return SeenObject(
        etag=info.etag.strip('"') if info.etag else None, size=info.size, stamp=info.version_id
    )
