"""Local files: plain paths and file:// URIs (`LocalStorage`), and the bucket-style store (`LocalStore`).

A `LocalStore` is a folder whose sub-folders are buckets and whose files below them are
objects (`<root>/data/incoming/x.zip` is the object `incoming/x.zip` in the bucket `data`),
so that the whole workflow runs on a laptop with no cloud. It refuses every path that would
leave its root.
"""

from __future__ import annotations

import os
import re
import stat as stat_mode
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote

from autoinfer.errors import StorageError
from autoinfer.storage.base import ObjectInfo, Storage
from autoinfer.storage.budget import ByteBudget
from autoinfer.storage.local_files import (
    OWN_WRITES,
    TEMP_PREFIX,
    copy_file,
    copy_into_place,
    file_etag,
)
from autoinfer.storage.output_zip import make_zip

_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")


def path_from_uri(uri: str, base_dir: Path | None = None) -> Path:
    """The local path named by a plain path or a `file://` URI (percent-decoded).

    Relative paths are taken from `base_dir` (default: the working folder). The result is
    absolute and lexically normalised (`a/../b` → `b`), so what is checked is what is opened.
    """
    raw = uri
    if uri[:5].lower() == "file:":
        rest = uri[5:]
        if rest.startswith("//"):
            host, slash, below = rest[2:].partition("/")
            if host not in ("", "localhost"):
                raise StorageError(f"{uri}: file URIs on another host ({host!r}) are not supported")
            rest = slash + below
        raw = unquote(rest)
    if not raw:
        raise StorageError(f"{uri!r}: empty path")
    if "\x00" in raw:
        raise StorageError(f"{uri!r}: the path contains a NUL character")
    path = Path(raw)
    if not path.is_absolute():
        path = (base_dir or Path.cwd()) / path
    return Path(os.path.normpath(path.absolute()))


def file_uri(path: Path, folder: bool = False) -> str:
    """`file://` URI of an absolute path (percent-encoded); a trailing `/` when `folder`."""
    uri = path.absolute().as_uri()
    return uri + "/" if folder and not uri.endswith("/") else uri


def _modified(st: os.stat_result) -> datetime:
    return datetime.fromtimestamp(st.st_mtime, tz=UTC)


def _reason(error: OSError) -> str:
    return error.strerror or str(error)


class LocalStorage(Storage):
    """Plain paths and `file://` URIs; relative paths are taken from `base_dir`."""

    schemes = ("", "file")
    writable = True
    local = True

    def __init__(self, base_dir: Path | None = None) -> None:
        self.base_dir = base_dir

    # -- what a URI means here (LocalStore narrows these) -------------------------------

    def path_of(self, uri: str) -> Path:
        """The local path `uri` names; StorageError when it may not be used."""
        return path_from_uri(uri, self.base_dir)

    def _key_of(self, path: Path) -> str:
        """The `key` that `stat` reports: a plain file's key is its absolute path."""
        return path.as_posix()

    def _admits(self, path: Path) -> bool:
        """Whether a file found while walking a folder may be served (LocalStore: inside root)."""
        return True

    # -- the Storage interface ------------------------------------------------------------

    def stat(self, uri: str) -> ObjectInfo:
        """The file at `uri` with its MD5 ETag; StorageError for a folder or nothing."""
        path = self.path_of(uri)
        return self._file_info(uri, path, self._key_of(path))

    def _file_info(self, uri: str, path: Path, key: str) -> ObjectInfo:
        """`stat` of the file `path` (already checked), reported under `key`; errors name `uri`."""
        try:
            st = path.stat()
            if stat_mode.S_ISDIR(st.st_mode):
                raise StorageError(f"{uri}: is a folder, not a file")
            if not stat_mode.S_ISREG(st.st_mode):
                raise StorageError(f"{uri}: not a regular file")
            etag = file_etag(path, st)
        except FileNotFoundError:
            raise StorageError(f"{uri}: no such file or folder") from None
        except OSError as error:
            raise StorageError(f"{uri}: {_reason(error)}") from None
        return ObjectInfo(
            uri=file_uri(path), key=key, size=st.st_size, etag=etag, modified=_modified(st)
        )

    def list(self, uri: str) -> Iterator[ObjectInfo]:
        """Every file below the folder `uri` (sorted, recursive); keys are relative to it.

        Symbolic links to folders are not followed; upload temp files are skipped.
        """
        folder = self.path_of(uri)
        self._require_folder(uri, folder)
        return self._infos(uri, folder)

    def _require_folder(self, uri: str, folder: Path) -> None:
        if folder.is_dir():
            return
        if folder.exists():
            raise StorageError(f"{uri}: not a folder")
        raise StorageError(f"{uri}: no such file or folder")

    def _infos(self, uri: str, folder: Path) -> Iterator[ObjectInfo]:
        for path, relative in self._walk(uri, folder):
            try:
                st = path.stat()
                etag = file_etag(path, st)
            except FileNotFoundError:
                continue  # deleted (or a dangling link) since the walk saw it: not an object
            except OSError as error:
                raise StorageError(f"{file_uri(path)}: {_reason(error)}") from None
            yield ObjectInfo(
                uri=file_uri(path),
                key=relative,
                size=st.st_size,
                etag=etag,
                modified=_modified(st),
            )

    def _walk(self, uri: str, folder: Path) -> Iterator[tuple[Path, str]]:
        """(path, relative posix path) of every regular file below `folder`, sorted."""

        def fail(error: OSError) -> None:
            raise StorageError(f"{uri}: {_reason(error)}")

        for current, dirs, files in os.walk(folder, onerror=fail):
            dirs.sort()
            base = Path(current)
            for name in sorted(files):
                if name.startswith(TEMP_PREFIX):
                    continue
                path = base / name
                if path.is_file() and self._admits(path):
                    yield path, path.relative_to(folder).as_posix()

    def local_path(self, uri: str) -> Path | None:
        """The file itself when `uri` names a regular file (not a link, folder or device)."""
        path = self.path_of(uri)
        try:
            st = path.lstat()
        except OSError:
            return None
        return path if stat_mode.S_ISREG(st.st_mode) else None

    def download(self, uri: str, dest: Path, budget: ByteBudget | None = None) -> Path:
        """A file lands as `dest/<name>` (returned); a folder's tree is copied below `dest`.
        With a `budget`, the sizes `stat` gives are checked before anything is copied."""
        src = self.path_of(uri)
        try:
            if src.is_file():
                target = dest / src.name
                if budget is not None:
                    budget.check_declared(uri, src.stat().st_size)
                copy_into_place(src, target, seen=budget.counter(uri) if budget else None)
                return target
            if src.is_dir():
                dest.mkdir(parents=True, exist_ok=True)
                files = list(self._walk(uri, src))
                if budget is not None:
                    budget.check_declared(uri, sum(path.stat().st_size for path, _ in files))
                for path, relative in files:
                    seen = budget.counter(file_uri(path)) if budget else None
                    copy_into_place(path, dest / relative, seen=seen)
                return dest
        except OSError as error:
            raise StorageError(f"{uri}: {_reason(error)}") from None
        raise StorageError(f"{uri}: no such file or folder")

    def upload(self, src: Path, uri: str) -> ObjectInfo:
        """Write `src` as the file `uri` atomically (temp file beside it, fsync, rename)."""
        target = self.path_of(uri)
        if uri.endswith("/") or target.is_dir():
            raise StorageError(f"{uri}: is a folder; name the file to write")
        if not src.is_file():
            raise StorageError(f"{src}: no such file to upload")
        try:
            etag = copy_file(src, target, durable=True)
            st = target.stat()
            OWN_WRITES.note(st)
        except OSError as error:
            raise StorageError(f"{uri}: {_reason(error)}") from None
        return ObjectInfo(
            uri=file_uri(target),
            key=self._key_of(target),
            size=st.st_size,
            etag=etag,
            modified=_modified(st),
        )

    def write_zip(self, folder: Path, uri: str) -> int:
        """The zip written where the object lies: a temp file beside it (hidden from listings
        as an upload's is), fsynced, renamed into place; no copy made first in scratch."""
        target = self.path_of(uri)
        if uri.endswith("/") or target.is_dir():
            raise StorageError(f"{uri}: is a folder; name the file to write")
        make_zip(folder, target, durable=True, temp_prefix=TEMP_PREFIX, write_error=StorageError)
        try:
            st = target.stat()
        except OSError as error:
            raise StorageError(f"{uri}: {_reason(error)}") from None
        OWN_WRITES.note(st)
        return st.st_size


class LocalStore(LocalStorage):
    """A bucket-style object store in a folder: bucket = sub-folder of `root`, key = path below.

    Every URI, bucket and key is checked: nothing that resolves outside the root (`..`,
    absolute keys, symbolic links pointing out) is read or written.
    """

    def __init__(self, root: Path | str, name: str = "local", base_dir: Path | None = None) -> None:
        super().__init__(base_dir)
        self.name = name
        root_path = Path(root).expanduser()
        if not root_path.is_absolute():
            root_path = (base_dir or Path.cwd()) / root_path
        self.root = Path(os.path.normpath(root_path.absolute()))
        self._real_root = self.root.resolve()

    def __repr__(self) -> str:
        return f"LocalStore(name={self.name!r}, root={str(self.root)!r})"

    # -- buckets and keys -----------------------------------------------------------------

    def path_for(self, bucket: str, key: str = "") -> Path:
        """The path of `key` in `bucket` (`key=""`: the bucket's folder); StorageError if it
        would resolve outside the root."""
        where = f"{bucket}/{key}"
        _check_bucket(bucket, self.name)
        if key.startswith(("/", "\\")) or _DRIVE.match(key):
            raise StorageError(f"{where}: absolute keys are not allowed in store '{self.name}'")
        if "\x00" in key:
            raise StorageError(f"{where!r}: the key contains a NUL character")
        if ".." in re.split(r"[\\/]", key):
            raise StorageError(f"{where}: '..' is not allowed in keys of store '{self.name}'")
        path = self.root / bucket / key
        try:
            real = path.resolve()
        except (OSError, RuntimeError) as error:
            raise StorageError(f"{where}: cannot resolve the path: {error}") from None
        if not real.is_relative_to(self._real_root):
            raise StorageError(
                f"{where}: resolves outside the root of store '{self.name}' ({self.root})"
            )
        return path

    def uri_for(self, bucket: str, key: str) -> str:
        """The `file://` URI of `key` in `bucket` (a key ending in `/` keeps its slash)."""
        path = self.path_for(bucket, key)
        return file_uri(path, folder=key.endswith("/"))

    def bucket_uri(self, bucket: str) -> str:
        """The `file://` URI of the bucket's folder, e.g. for `{bucket_uri}/processed`."""
        return file_uri(self.path_for(bucket), folder=False)

    def contains(self, uri: str | Path) -> bool:
        """Whether the path or URI lies lexically inside this store's root."""
        path = path_from_uri(uri, self.base_dir) if isinstance(uri, str) else uri
        path = Path(os.path.normpath(path.absolute()))
        return path.is_relative_to(self.root) or path.is_relative_to(self._real_root)

    def place(self, uri: str) -> tuple[str, str] | None:
        """`locate` for a URI inside the root (StorageError for the root itself); None
        for one outside it (the triggers' Locator protocol)."""
        return self.locate(uri) if self.contains(uri) else None

    def locate(self, uri: str) -> tuple[str, str]:
        """(bucket, key) of a path or `file://` URI inside the root; StorageError otherwise."""
        bucket, key, _ = self._located(uri)
        return bucket, key

    def _located(self, uri: str) -> tuple[str, str, Path]:
        """`locate`, and the checked path (`path_for`) of that bucket and key."""
        path = path_from_uri(uri, self.base_dir)
        for root in (self.root, self._real_root):
            if path.is_relative_to(root):
                parts = path.relative_to(root).parts
                break
        else:
            raise StorageError(f"{uri}: outside the root of store '{self.name}' ({self.root})")
        if not parts:
            raise StorageError(f"{uri}: the root of store '{self.name}', not a bucket")
        bucket, key = parts[0], "/".join(parts[1:])
        if key and uri.endswith("/"):
            key += "/"
        return bucket, key, self.path_for(bucket, key)

    def object_info(self, bucket: str, key: str) -> ObjectInfo:
        """The object `key` in `bucket`, its ETag the content's MD5 (as S3's single-part)."""
        path = self.path_for(bucket, key)
        return self._file_info(file_uri(path), path, key)

    # -- the Storage interface, with the root enforced --------------------------------------

    def path_of(self, uri: str) -> Path:
        return self._located(uri)[2]

    def _key_of(self, path: Path) -> str:
        return "/".join(path.relative_to(self.root).parts[1:])

    def _admits(self, path: Path) -> bool:
        return path.resolve().is_relative_to(self._real_root)

    def stat(self, uri: str) -> ObjectInfo:
        _, key, path = self._located(uri)
        return self._file_info(file_uri(path), path, key)

    def list(self, uri: str) -> Iterator[ObjectInfo]:
        """Objects below the bucket/prefix `uri`; a prefix with no folder yet lists nothing,
        a missing bucket is a StorageError."""
        bucket, key = self.locate(uri)
        if not self.path_for(bucket).is_dir():
            raise StorageError(f"{uri}: no such bucket '{bucket}' in store '{self.name}'")
        folder = self.path_for(bucket, key)
        if not folder.exists():
            return iter(())
        self._require_folder(uri, folder)
        return self._infos(uri, folder)


def _check_bucket(bucket: str, store: str) -> None:
    if not bucket or bucket in (".", "..") or re.search(r"[\\/\x00]", bucket):
        raise StorageError(f"{bucket!r}: not a valid bucket name in store '{store}'")
