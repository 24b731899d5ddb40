"""Safe extraction of input archives (.zip, .tar, .tar.gz, .tgz).

Which files are archives is `archive_kinds`; the deterministic output zips are `output_zip`
(both re-exported here).

Archives come from whoever can write to a bucket, so extraction trusts nothing in them: every
entry's path, type and size is checked before it is written, the bytes actually written are
counted, and a refused archive leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO

from autoinfer.errors import ArchiveError
from autoinfer.storage.archive_kinds import (
    ARCHIVE_SUFFIXES,
    ArchiveKind,
    archive_kind,
    kind_by_name,
    sniff,
    tar_read_mode,
)
from autoinfer.storage.archive_limits import ArchiveLimits
from autoinfer.storage.output_zip import CHUNK_SIZE, make_zip, output_files
from autoinfer.text import error_line

__all__ = [
    "ARCHIVE_SUFFIXES",
    "ArchiveKind",
    "ArchiveLimits",
    "archive_kind",
    "extract",
    "kind_by_name",
    "make_zip",
    "output_files",
    "sniff",
]


_DRIVE = re.compile(r"^[A-Za-z]:")
_SEPARATORS = re.compile(r"[\\/]")


def extract(
    archive: Path, dest: Path, limits: ArchiveLimits, *, budget_bytes: int | None = None
) -> list[Path]:
    """Unpack `archive` into `dest` and return the files written, in archive order.

    `budget_bytes` (the job's disk_size) lowers `limits.max_total_bytes`. Nothing is ever
    written outside `dest`; links, devices, traversal, bombs, lying sizes and (by default)
    nested archives raise ArchiveError naming the archive and the entry, after removing
    whatever had been extracted. macOS junk (`__MACOSX/`, `.DS_Store`, `._*`) is skipped.
    """
    kind = archive_kind(archive)
    if kind is None:
        raise ArchiveError(f"{archive.name}: not an archive (.zip, .tar, .tar.gz or .tgz)")
    extraction = _Extraction(archive, dest, limits, budget_bytes)
    try:
        if kind == "zip":
            extraction.run_zip()
        else:
            extraction.run_tar()
    except BaseException:
        extraction.undo()
        raise
    return extraction.written


class _Extraction:
    """One extraction: checks entries, writes them counting bytes, undoes itself on failure."""

    def __init__(
        self, archive: Path, dest: Path, limits: ArchiveLimits, budget_bytes: int | None
    ) -> None:
        self.archive = archive
        self.name = archive.name
        self.dest = Path(os.path.abspath(dest))
        self.limits = limits
        self.budget_bytes = budget_bytes
        self.cap = limits.max_total_bytes
        if budget_bytes is not None:
            self.cap = min(self.cap, budget_bytes)
        self.written: list[Path] = []
        self._written_set: set[Path] = set()
        self._created_dirs: list[Path] = []
        self._checked_dirs: set[Path] = set()  # made or found, and checked inside dest
        self._opened_files: list[Path] = []
        self._bytes_written = 0
        self._real_dest: Path | None = None
        try:
            self.archive_size = archive.stat().st_size
        except OSError as error:
            raise ArchiveError(f"{self.name}: cannot read: {error.strerror or error}") from None

    # -- zip ----------------------------------------------------------------------------

    def run_zip(self) -> None:
        try:
            with zipfile.ZipFile(self.archive) as zf:
                plan = self._check_zip(zf.infolist())
                self._prepare_dest()
                for info, relative in plan:
                    if info.is_dir():
                        self._make_dirs(self.dest / relative)
                        continue
                    executable = bool((info.external_attr >> 16) & stat.S_IXUSR)
                    with self._zip_reading(info.filename), zf.open(info) as source:
                        self._write_file(
                            info.filename, relative, source, info.file_size, executable
                        )
        except (zipfile.BadZipFile, zlib.error, EOFError, ValueError) as error:
            raise ArchiveError(
                f"{self.name}: not a valid zip archive: {error_line(error)}"
            ) from None
        except OSError as error:
            raise ArchiveError(
                f"{self.name}: not a valid zip archive: {error_line(error)}"
            ) from None

    @contextlib.contextmanager
    def _zip_reading(self, entry: str) -> Iterator[None]:
        try:
            yield
        except zipfile.BadZipFile as error:
            if "CRC" in str(error):
                raise ArchiveError(
                    f"{self.name}: entry '{entry}' does not match its header (bad CRC-32: "
                    "the entry is corrupt or its declared size is a lie)"
                ) from None
            raise ArchiveError(f"{self.name}: entry '{entry}' is corrupt: {error}") from None
        except NotImplementedError as error:
            raise ArchiveError(f"{self.name}: entry '{entry}': {error}") from None
        except (zlib.error, EOFError) as error:
            raise ArchiveError(f"{self.name}: entry '{entry}' is corrupt: {error}") from None

    def _check_zip(
        self, infos: list[zipfile.ZipInfo]
    ) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
        """Every refusal a zip can earn from its central directory, before anything is written."""
        if len(infos) > self.limits.max_entries:
            self._too_many(len(infos))
        plan = []
        total = 0
        for info in infos:
            entry = info.filename
            relative = self._safe_relative(entry)
            file_type = stat.S_IFMT(info.external_attr >> 16)  # 0 when the tool wrote none
            if info.create_system == 3 and file_type:
                if file_type == stat.S_IFLNK:
                    raise ArchiveError(f"{self.name}: entry '{entry}' is a symbolic link; refused")
                if file_type not in (stat.S_IFREG, stat.S_IFDIR):
                    raise ArchiveError(f"{self.name}: entry '{entry}' is a special file; refused")
            if relative is None or _is_junk(relative):
                continue
            if info.is_dir():
                plan.append((info, relative))
                continue
            if info.flag_bits & 0x1:
                raise ArchiveError(f"{self.name}: entry '{entry}' is encrypted; refused")
            self._check_nested(entry, relative)
            if info.file_size > self.limits.ratio_floor_bytes:
                ratio = info.file_size / max(info.compress_size, 1)
                if ratio > self.limits.max_ratio:
                    raise ArchiveError(
                        f"{self.name}: entry '{entry}' expands {ratio:.0f}:1 (limit "
                        f"{self.limits.max_ratio:g}:1); refusing a likely zip bomb"
                    )
            total += info.file_size
            plan.append((info, relative))
        self._check_total(total, exact=True)
        return plan

    # -- tar ----------------------------------------------------------------------------

    def run_tar(self) -> None:
        try:
            with tarfile.open(self.archive, tar_read_mode(self.archive)) as tar:
                self._prepare_dest()
                count = 0
                total = 0
                for member in tar:
                    count += 1
                    if count > self.limits.max_entries:
                        self._too_many(count, at_least=True)
                    relative = self._check_tar_member(member)
                    if relative is None or _is_junk(relative):
                        continue
                    if member.isdir():
                        self._make_dirs(self.dest / relative)
                        continue
                    self._check_nested(member.name, relative)
                    total += member.size
                    self._check_total(total, exact=False)
                    source = tar.extractfile(member)
                    if source is None:  # pragma: no cover - regular files always have data
                        raise ArchiveError(f"{self.name}: entry '{member.name}' has no data")
                    with source:
                        executable = bool(member.mode & stat.S_IXUSR)
                        self._write_file(member.name, relative, source, member.size, executable)
        except (tarfile.TarError, zlib.error, EOFError) as error:
            raise ArchiveError(
                f"{self.name}: not a valid tar archive: {error_line(error)}"
            ) from None
        except OSError as error:  # gzip.BadGzipFile, truncated streams
            raise ArchiveError(
                f"{self.name}: not a valid tar archive: {error_line(error)}"
            ) from None

    def _check_tar_member(self, member: tarfile.TarInfo) -> PurePosixPath | None:
        entry = member.name
        relative = self._safe_relative(entry)
        if member.issym():
            raise ArchiveError(
                f"{self.name}: entry '{entry}' is a symbolic link (to '{member.linkname}'); refused"
            )
        if member.islnk():
            raise ArchiveError(
                f"{self.name}: entry '{entry}' is a hard link (to '{member.linkname}'); refused"
            )
        if not (member.isreg() or member.isdir()):
            raise ArchiveError(f"{self.name}: entry '{entry}' is a device or special file; refused")
        try:
            tarfile.data_filter(member, str(self.dest))
        except tarfile.FilterError as error:
            raise ArchiveError(f"{self.name}: entry '{entry}' refused: {error}") from None
        return relative

    # -- checks shared by both formats ------------------------------------------------------

    def _safe_relative(self, entry: str) -> PurePosixPath | None:
        """The entry's path below dest; None for an entry that names no path (`./`)."""
        if "\x00" in entry:
            raise ArchiveError(f"{self.name}: entry {entry!r} has a NUL character in its name")
        if entry.startswith(("/", "\\")) or _DRIVE.match(entry):
            raise ArchiveError(f"{self.name}: entry '{entry}' has an absolute path; refused")
        parts = [part for part in _SEPARATORS.split(entry) if part not in ("", ".")]
        if ".." in parts:
            raise ArchiveError(
                f"{self.name}: entry '{entry}' has '..' in its path; refused (it would be "
                "written outside the destination)"
            )
        return PurePosixPath(*parts) if parts else None

    def _check_nested(self, entry: str, relative: PurePosixPath) -> None:
        if self.limits.nested == "reject" and kind_by_name(relative.name):
            raise ArchiveError(
                f"{self.name}: nested archive '{entry}' is not extracted; put its files in "
                "the outer archive, or allow nested archives to keep them as plain files"
            )

    def _too_many(self, count: int, at_least: bool = False) -> None:
        held = f"more than {self.limits.max_entries}" if at_least else str(count)
        raise ArchiveError(
            f"{self.name}: holds {held} entries (limit {self.limits.max_entries}); refused"
        )

    def _check_total(self, total: int, exact: bool) -> None:
        size = _human(total) if exact else f"at least {_human(total)}"
        if total > self.cap:
            if self.budget_bytes is not None and self.budget_bytes < self.limits.max_total_bytes:
                raise ArchiveError(
                    f"{self.name}: unpacks to {size}, which exceeds the job's disk_size "
                    f"({_human(self.budget_bytes)})"
                )
            raise ArchiveError(
                f"{self.name}: unpacks to {size}, above the extraction limit of "
                f"{_human(self.limits.max_total_bytes)}"
            )
        if total > self.limits.ratio_floor_bytes:
            ratio = total / max(self.archive_size, 1)
            if ratio > self.limits.max_ratio:
                raise ArchiveError(
                    f"{self.name}: expands {ratio:.0f}:1 overall (limit "
                    f"{self.limits.max_ratio:g}:1); refusing a likely decompression bomb"
                )

    # -- writing, and undoing it --------------------------------------------------------------

    def _prepare_dest(self) -> None:
        self._make_dirs(self.dest)
        self._real_dest = self.dest.resolve()

    def _make_dirs(self, folder: Path) -> None:
        if folder in self._checked_dirs:  # the folder of the entry before: checked already
            return
        missing = []
        current = folder
        while not current.is_dir():
            missing.append(current)
            if current.parent == current:
                break
            current = current.parent
        for path in reversed(missing):
            try:
                path.mkdir()
            except OSError as error:
                raise ArchiveError(
                    f"{self.name}: cannot create the folder {path}: {error.strerror or error}"
                ) from None
            self._created_dirs.append(path)
        self._check_inside(folder)
        self._checked_dirs.add(folder)

    def _check_inside(self, path: Path) -> None:
        # A folder that already existed in dest could be a link pointing elsewhere.
        if self._real_dest is not None and not path.resolve().is_relative_to(self._real_dest):
            raise ArchiveError(f"{self.name}: {path} resolves outside {self.dest}; refused")

    def _write_file(
        self,
        entry: str,
        relative: PurePosixPath,
        source: IO[bytes],
        declared: int,
        executable: bool,
    ) -> None:
        target = self.dest / relative
        self._make_dirs(target.parent)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(target, flags, 0o755 if executable else 0o644)
        except OSError as error:
            raise ArchiveError(
                f"{self.name}: cannot write entry '{entry}': {error.strerror or error}"
            ) from None
        self._opened_files.append(target)
        count = 0
        with open(fd, "wb") as out:
            while chunk := source.read(CHUNK_SIZE):
                count += len(chunk)
                if count > declared:
                    raise ArchiveError(
                        f"{self.name}: entry '{entry}' holds more data than its header declares "
                        f"({declared} bytes); refused"
                    )
                if self._bytes_written + count > self.cap:
                    self._check_total(self._bytes_written + count, exact=False)
                try:
                    out.write(chunk)
                except OSError as error:
                    raise ArchiveError(
                        f"{self.name}: cannot write entry '{entry}': {error.strerror or error}"
                    ) from None
        if count != declared:
            raise ArchiveError(
                f"{self.name}: entry '{entry}' holds {count} bytes but its header declares "
                f"{declared}; the archive is truncated or corrupt"
            )
        self._bytes_written += count
        if target not in self._written_set:
            self._written_set.add(target)
            self.written.append(target)

    def undo(self) -> None:
        """Remove every file this extraction wrote and every folder it created."""
        for path in self._opened_files:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        for folder in reversed(self._created_dirs):
            # a folder that is not empty holds something this extraction did not write
            with contextlib.suppress(OSError):
                folder.rmdir()


def _is_junk(relative: PurePosixPath) -> bool:
    """macOS metadata that zip tools on a Mac add: no one's data."""
    name = relative.name
    return "__MACOSX" in relative.parts or name == ".DS_Store" or name.startswith("._")


def _human(size: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")
