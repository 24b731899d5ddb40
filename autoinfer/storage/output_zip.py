"""A job's output: the files it may upload (`output_files`) and its deterministic zip
(`make_zip`): the same files give the same bytes, so a re-upload is idempotent.
"""

from __future__ import annotations

import os
import stat
import tempfile
import zipfile
from pathlib import Path

from autoinfer.errors import ArchiveError, StorageError

#: Bytes copied at a time (into a zip here, out of one in `archives`).
CHUNK_SIZE = 1024 * 1024
#: Output zips carry this timestamp on every entry, so equal outputs give equal bytes.
FIXED_DATE_TIME = (1980, 1, 1, 0, 0, 0)


def make_zip(
    folder: Path,
    zip_path: Path,
    *,
    durable: bool = False,
    temp_prefix: str = ".autoinfer-zip-",
    write_error: type[StorageError] = ArchiveError,
) -> Path:
    """Zip every file below `folder` (relative paths, sorted, deflated) into `zip_path`.

    Entries carry a fixed timestamp and mode, so the same files give the same bytes and a
    re-upload is idempotent. Written to a temp file (named `temp_prefix`...) and renamed, never
    half-written; `durable` fsyncs it before the rename, so a crash leaves the old file or the
    new one. Links to files inside `folder` are stored as those files; any other link is an
    ArchiveError. A file that cannot be written (or read) is a `write_error`.
    """
    if not folder.is_dir():
        raise ArchiveError(f"{folder}: no such folder to zip")
    files = _output_files(folder, exclude=zip_path)
    try:
        zip_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=zip_path.parent, prefix=temp_prefix)
    except OSError as error:
        raise write_error(f"{zip_path}: cannot write: {error.strerror or error}") from None
    tmp = Path(tmp_name)
    try:
        with open(fd, "wb") as handle, zipfile.ZipFile(handle, "w", zipfile.ZIP_DEFLATED) as zf:
            for path, relative in files:
                info = zipfile.ZipInfo(relative, date_time=FIXED_DATE_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.create_system = 3
                info.external_attr = (stat.S_IFREG | 0o644) << 16
                info.file_size = path.stat().st_size
                force_zip64 = info.file_size > zipfile.ZIP64_LIMIT
                with path.open("rb") as source, zf.open(info, "w", force_zip64=force_zip64) as out:
                    while chunk := source.read(CHUNK_SIZE):
                        out.write(chunk)
            zf.close()  # the central directory, before the fsync
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, zip_path)
    except OSError as error:
        raise write_error(f"{zip_path}: cannot write: {error.strerror or error}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return zip_path


def output_files(folder: Path) -> list[tuple[Path, str]]:
    """(path, relative posix path) of every file of a job's output, as `make_zip` takes them:
    plain files, and links to files inside `folder` (any other link is an ArchiveError, so
    model code cannot have the service upload a file it could not read itself)."""
    return _output_files(folder, exclude=folder)


def _output_files(folder: Path, exclude: Path) -> list[tuple[Path, str]]:
    """(path, relative posix path) of every file to zip, sorted by relative path."""
    real_folder = folder.resolve()
    excluded = exclude.resolve() if exclude.exists() else Path(os.path.abspath(exclude))
    found: list[tuple[Path, str]] = []

    def fail(error: OSError) -> None:
        raise ArchiveError(f"{folder}: cannot read: {error.strerror or error}")

    for current, dirs, names in os.walk(folder, onerror=fail):
        base = Path(current)
        for name in dirs:
            if (base / name).is_symlink():
                raise ArchiveError(
                    f"{folder}: '{(base / name).relative_to(folder)}' is a link to a folder; "
                    "outputs must be plain files"
                )
        for name in names:
            path = base / name
            relative = path.relative_to(folder).as_posix()
            link = path.is_symlink()
            # Only a link needs resolving: no folder below `folder` is a link (refused above).
            real = path.resolve() if link else real_folder / relative
            if name.startswith(".autoinfer-zip-") or real == excluded:
                continue
            if link:
                if not real.is_relative_to(real_folder) or not real.is_file():
                    raise ArchiveError(
                        f"{folder}: '{relative}' is a link to something outside the output "
                        "folder (or to nothing); outputs must be plain files"
                    )
            elif not path.is_file():
                raise ArchiveError(f"{folder}: '{relative}' is not a regular file")
            found.append((path, relative))
    return sorted(found, key=lambda item: item[1])
