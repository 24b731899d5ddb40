"""The storage interface every backend implements (local/file://, http(s)://, s3://)."""

from __future__ import annotations

import builtins
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

from autoinfer.errors import StorageError
from autoinfer.storage.budget import ByteBudget
from autoinfer.storage.output_zip import output_files


@dataclass(frozen=True)
class ObjectInfo:
    """One object (file) in a store."""

    uri: str  # the object's full URI in its backend's scheme
    key: str  # its path relative to the listed URI (for `list`) or its bucket key (for `stat`)
    size: int
    etag: str | None = None  # S3's ETag; the local store uses the content's MD5, like S3 does
    modified: datetime | None = None
    version_id: str | None = None


class Storage(ABC):
    """One interface over URIs. Backends raise StorageError naming the URI and the reason."""

    #: URI schemes this backend serves, e.g. ("s3",) or ("file", "").
    schemes: tuple[str, ...] = ()
    #: Whether `upload` is supported (http is input-only).
    writable: bool = True
    #: Whether `upload_with_progress` reports bytes as they are sent (a remote store; a
    #: local copy has nothing to wait for).
    reports_progress: bool = False
    #: Whether objects are files of this machine (reading and writing them takes milliseconds).
    local: bool = False

    @abstractmethod
    def stat(self, uri: str) -> ObjectInfo:
        """The object at `uri`; StorageError if there is none."""

    @abstractmethod
    def list(self, uri: str) -> Iterator[ObjectInfo]:
        """Every object below the prefix/folder `uri`, recursively, paginated lazily."""

    @abstractmethod
    def download(self, uri: str, dest: Path, budget: ByteBudget | None = None) -> Path:
        """Fetch `uri` into the folder `dest`.

        A single object lands as `dest/<its base name>` and that file's path is returned. A
        prefix/folder lands with its relative paths kept below `dest`, and `dest` is returned.
        StorageError when nothing exists at `uri`. Streams; never holds a whole object in memory.
        With a `budget`, the sizes the store declares are checked against it before copying
        and the bytes written are counted while copying (InputRejected past it).
        """

    @abstractmethod
    def upload(self, src: Path, uri: str) -> ObjectInfo:
        """Write the file `src` as the object `uri`, replacing it whole (never half-written)."""

    def upload_tree(self, src_dir: Path, uri_prefix: str) -> builtins.list[str]:
        """Upload every file below `src_dir` under `uri_prefix`, keeping relative paths; a link
        leading out of `src_dir` is an ArchiveError (output_zip.output_files), never followed."""
        uploaded = []
        for path, relative in output_files(src_dir):
            target = join_uri(uri_prefix, relative)
            self.upload(path, target)
            uploaded.append(target)
        return uploaded

    def upload_with_progress(
        self, src: Path, uri: str, progress: Callable[[int], None]
    ) -> ObjectInfo:
        """`upload`, calling `progress(n)` as each further `n` bytes are sent where the backend
        reports progress (`reports_progress`); others just upload."""
        return self.upload(src, uri)

    def write_zip(self, folder: Path, uri: str) -> int | None:
        """Zip `folder` (`output_zip.make_zip`) straight into the object `uri` where this store
        can do so atomically (a local store: beside the file, renamed into place); the zip's
        size, or None: the caller makes the zip and `upload`s it."""
        return None

    def local_path(self, uri: str) -> Path | None:
        """The regular local file `uri` names, when it may be read where it lies instead of
        being downloaded first (a local store's file); None: download it."""
        return None

    def exists(self, uri: str) -> bool:
        """Whether `stat(uri)` finds an object (a folder or prefix is not one)."""
        try:
            self.stat(uri)
        except StorageError:
            return False
        return True


def join_uri(prefix: str, name: str) -> str:
    """`join_uri("s3://b/processed", "x.zip")` → `s3://b/processed/x.zip`.

    `name` is a plain relative path; below a `file://` prefix it is percent-encoded, as file
    URIs are (`my file.zip` → `my%20file.zip`), so that decoding gives the name back.
    """
    if prefix[:5].lower() == "file:":
        name = quote(name)
    return prefix.rstrip("/") + "/" + name.lstrip("/")
