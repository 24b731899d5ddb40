"""Linux inotify through libc (ctypes), and whether a file is still open for writing.

The watch source learns that a file is complete from the kernel instead of from a timer:
`IN_CLOSE_WRITE` (its writer closed it) and `IN_MOVED_TO` (it was renamed into place). A
`TreeWatch` keeps a watch on every folder below a root, adding folders created or moved in
later. `open_for_writing` asks the kernel whether any process still holds a file open for
writing (a read lease is refused while one does), so a writer that pauses between writes is
never mistaken for a finished one, and a file found by a scan can be reported at once when
nobody writes it. Neither exists on network filesystems, where remote writers are invisible:
`is_network_fs` says when to fall back to the settle timer.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import os
import select
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Self

IN_MODIFY = 0x00000002
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_ISDIR = 0x40000000
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000
F_SETLEASE = 1024  # fcntl.F_SETLEASE where Python's fcntl module lacks it

WATCH_MASK = (
    IN_MODIFY
    | IN_CLOSE_WRITE
    | IN_MOVED_FROM
    | IN_MOVED_TO
    | IN_CREATE
    | IN_DELETE
    | IN_DELETE_SELF
    | IN_MOVE_SELF
    | IN_ONLYDIR
)
_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len
_READ_BYTES = 256 * 1024

#: statfs f_type of filesystems whose writers may be on another machine.
NETWORK_FS_MAGIC = frozenset(
    {
        0x6969,  # NFS
        0x517B,  # SMB
        0xFF534D42,  # CIFS
        0xFE534D42,  # SMB2
        0x65735546,  # FUSE (sshfs, s3fs, gcsfuse, ...)
        0x00C36400,  # Ceph
        0x01021997,  # 9p
        0x5346414F,  # AFS
        0x47504653,  # GPFS
        0x0BD00BD0,  # Lustre
    }
)


@dataclass(frozen=True)
class Change:
    """What happened to a path below the watched root.

    kind: "written" (closed after writing), "moved_in" (renamed into place), "changing"
    (created or modified, its writer may still hold it open), "folder" (a folder created or
    moved in: its files were not seen arriving), "gone" (deleted or moved away), "overflow"
    (the kernel dropped events: rescan everything).
    """

    kind: str
    path: Path


class InotifyUnavailable(OSError):
    """inotify cannot be used here (not Linux, no libc, out of watches)."""


def _libc() -> ctypes.CDLL:
    name = ctypes.util.find_library("c")
    if name is None:
        raise InotifyUnavailable("no C library found")
    libc = ctypes.CDLL(name, use_errno=True)
    if not hasattr(libc, "inotify_init1"):
        raise InotifyUnavailable("this C library has no inotify")
    libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    libc.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
    return libc


class TreeWatch:
    """An inotify instance watching every folder below `root` (hidden folders excepted).

    `read` returns the changes since the last call. Folders created or moved in later are
    watched as they appear (reported as a "folder" change so their files can be scanned:
    files written before the folder's watch existed raise no event). Not thread-safe: one
    thread reads it. `close()` it.
    """

    def __init__(self, root: Path) -> None:
        try:
            self._libc = _libc()
        except OSError as error:
            raise InotifyUnavailable(str(error)) from None
        fd = self._libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            code = ctypes.get_errno()
            raise InotifyUnavailable(f"inotify_init1: {os.strerror(code)}")
        self.fd = fd
        self.root = root
        self._paths: dict[int, Path] = {}  # watch descriptor → folder
        self._root_wd = self._add_tree(root)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- watches ------------------------------------------------------------------------

    def _add(self, folder: Path) -> int:
        wd = self._libc.inotify_add_watch(self.fd, os.fsencode(folder), WATCH_MASK)
        if wd < 0:
            code = ctypes.get_errno()
            if code in (errno.ENOENT, errno.ENOTDIR, errno.EACCES):
                return -1  # gone again, or not ours to watch: the rescan covers it
            raise InotifyUnavailable(f"inotify_add_watch {folder}: {os.strerror(code)}")
        self._paths[wd] = folder
        return wd

    def _add_tree(self, folder: Path) -> int:
        top = self._add(folder)
        for current, dirs, _ in os.walk(folder):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            for name in dirs:
                self._add(Path(current) / name)
        return top

    def _forget_below(self, folder: Path) -> None:
        for wd, path in list(self._paths.items()):
            if path == folder or folder in path.parents:
                self._libc.inotify_rm_watch(self.fd, wd)
                self._paths.pop(wd, None)

    # --- events -------------------------------------------------------------------------

    def read(self, timeout_s: float) -> list[Change]:
        """The changes that arrive within `timeout_s` (those already queued at once)."""
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        if not poller.poll(max(0, int(timeout_s * 1000))):
            return []
        changes: list[Change] = []
        while True:
            try:
                data = os.read(self.fd, _READ_BYTES)
            except BlockingIOError:
                break
            changes.extend(self._parse(data))
            if len(data) < _READ_BYTES // 2:
                break
        return changes

    def _parse(self, data: bytes) -> Iterator[Change]:
        offset = 0
        while offset + _HEADER.size <= len(data):
            wd, mask, _, length = _HEADER.unpack_from(data, offset)
            offset += _HEADER.size
            raw = data[offset : offset + length].split(b"\0", 1)[0]
            offset += length
            if mask & IN_Q_OVERFLOW:
                yield Change("overflow", self.root)
                continue
            folder = self._paths.get(wd)
            if mask & IN_IGNORED:
                self._paths.pop(wd, None)
                if wd == self._root_wd:
                    raise InotifyUnavailable(f"{self.root} was removed or moved away")
                continue
            if folder is None or not raw:
                continue  # an event about a watched folder itself (handled by its parent)
            path = folder / os.fsdecode(raw)
            yield from self._change(mask, path)

    def _change(self, mask: int, path: Path) -> Iterator[Change]:
        if mask & IN_ISDIR:
            if mask & (IN_CREATE | IN_MOVED_TO) and not path.name.startswith("."):
                self._add_tree(path)
                yield Change("folder", path)
            elif mask & (IN_MOVED_FROM | IN_DELETE):
                self._forget_below(path)
            return
        if mask & IN_CLOSE_WRITE:
            yield Change("written", path)
        elif mask & IN_MOVED_TO:
            yield Change("moved_in", path)
        elif mask & (IN_CREATE | IN_MODIFY):
            yield Change("changing", path)
        elif mask & (IN_DELETE | IN_MOVED_FROM):
            yield Change("gone", path)


def open_for_writing(path: Path) -> bool | None:
    """Whether some process holds `path` open for writing: True, False, or None when this
    cannot be known (the file is not ours, or the filesystem has no leases).

    A read lease is granted only while nobody has the file open for writing; it is taken and
    given back at once (a writer opening the file meanwhile waits microseconds, not the
    lease-break time).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        setlease = getattr(fcntl, "F_SETLEASE", F_SETLEASE)
        try:
            fcntl.fcntl(fd, setlease, fcntl.F_RDLCK)
        except OSError as error:
            if error.errno == errno.EAGAIN:
                return True
            return None  # EACCES (not the owner), EINVAL (no leases here)
        fcntl.fcntl(fd, setlease, fcntl.F_UNLCK)
        return False
    finally:
        os.close(fd)


class _StatFs(ctypes.Structure):
    _fields_ = [("f_type", ctypes.c_long), ("rest", ctypes.c_byte * 112)]


def is_network_fs(path: Path) -> bool:
    """Whether `path` is on a filesystem whose writers may be on other machines (NFS, SMB,
    FUSE, Ceph, ...): there inotify and leases see only this machine's writers."""
    try:
        libc = _libc()
    except OSError:
        return True  # nothing can be known: assume the worst
    buffer = _StatFs()
    if libc.statfs(os.fsencode(path), ctypes.byref(buffer)) != 0:
        return True
    return (buffer.f_type & 0xFFFFFFFF) in NETWORK_FS_MAGIC
