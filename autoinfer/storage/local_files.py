"""Files copied into place whole (a temp file beside the target, then a rename) and their
content MD5s (S3's ETag for a single-part upload), cached by file identity so listing a
store does not rehash it.
"""

from __future__ import annotations

import hashlib
import os
import stat as stat_mode
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

#: Bytes read and written at a time.
CHUNK_SIZE = 1024 * 1024
#: Uploads are written under this prefix in the target folder, then renamed into place;
#: listings skip such files so nobody sees a half-written object.
TEMP_PREFIX = ".autoinfer-upload-"


class _EtagCache:
    """Content MD5s keyed by file identity and change stamps, so stat/list don't rehash."""

    def __init__(self, capacity: int = 8192) -> None:
        self._capacity = capacity
        self._items: dict[tuple[int, ...], str] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(st: os.stat_result) -> tuple[int, ...]:
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def get(self, st: os.stat_result) -> str | None:
        with self._lock:
            return self._items.get(self._key(st))

    def put(self, st: os.stat_result, etag: str) -> None:
        with self._lock:
            if len(self._items) >= self._capacity:
                self._items.pop(next(iter(self._items)))
            self._items[self._key(st)] = etag


_ETAGS = _EtagCache()


class _OwnWrites:
    """The files this process last wrote into a store (result uploads), by identity and
    change stamps: a watch source over that store need not report them as new objects when
    no trigger wants them (`autoinfer.events.watch`). Bounded; the oldest are forgotten."""

    def __init__(self, capacity: int = 4096) -> None:
        self._capacity = capacity
        self._items: dict[tuple[int, ...], None] = {}
        self._lock = threading.Lock()

    def note(self, st: os.stat_result) -> None:
        with self._lock:
            if len(self._items) >= self._capacity:
                self._items.pop(next(iter(self._items)))
            self._items[_EtagCache._key(st)] = None

    def take(self, st: os.stat_result) -> bool:
        """Whether this process wrote the file as it is now (forgotten once asked)."""
        with self._lock:
            return self._items.pop(_EtagCache._key(st), False) is None


OWN_WRITES = _OwnWrites()


def file_etag(path: Path, st: os.stat_result | None = None) -> str:
    """Hex MD5 of the file's content (S3's ETag for a single-part upload), read streaming."""
    st = st or path.stat()
    cached = _ETAGS.get(st)
    if cached is not None:
        return cached
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as file:
        while chunk := file.read(CHUNK_SIZE):
            digest.update(chunk)
    etag = digest.hexdigest()
    _ETAGS.put(st, etag)
    return etag


def copy_file(src: Path, target: Path, *, durable: bool = False) -> str:
    """Copy `src` to `target` atomically (temp file beside it, then rename); returns its MD5.

    `durable` fsyncs before the rename, so a crash leaves the old object or the new one.
    """
    digest = hashlib.md5(usedforsecurity=False)
    copy_into_place(src, target, durable=durable, seen=digest.update)
    etag = digest.hexdigest()
    _ETAGS.put(target.stat(), etag)
    return etag


def copy_into_place(
    src: Path, target: Path, *, durable: bool = False, seen: Callable[[bytes], None] | None = None
) -> None:
    """Copy `src` to a temp file beside `target`, then rename it into place; `seen` gets every
    chunk copied (a download skips hashing: its MD5 was never asked for)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=TEMP_PREFIX)
    tmp = Path(tmp_name)
    try:
        with open(fd, "wb") as out, src.open("rb") as source:
            while chunk := source.read(CHUNK_SIZE):
                if seen is not None:
                    seen(chunk)
                out.write(chunk)
            out.flush()
            if durable:
                os.fsync(out.fileno())
        executable = src.stat().st_mode & stat_mode.S_IXUSR
        os.chmod(tmp, 0o755 if executable else 0o644)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
