"""The folder of built environments, `<data_dir>/environments/`:

    <hash>/                 a ready environment (only ever appears by an atomic rename)
    <hash>/.last-used       touched whenever a job starts using it
    .build-<hash>-<rand>/   a build in progress (or left by a killed one: swept)
    .locks/<hash>.lock      flock: exclusive to build or remove, shared while jobs use it
    .uv-cache/              uv's download and wheel cache (private)

Environments are world-readable (0755 folders, 0644 files) so the sandboxed job's
unprivileged user can run them; everything else here is private to the service.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import stat
import threading
import time
import uuid
from pathlib import Path

from autoinfer.errors import JobStopped

HASH = re.compile(r"^[0-9a-f]{64}$")
LAST_USED = ".last-used"
LOCK_POLL_S = 0.2


class HeldLock:
    """An flock held on an environment's lock file; `release` (or process exit) frees it."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    def share(self) -> None:
        """Turn an exclusive lock into a shared one (others may use, none may remove)."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_SH)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class EnvironmentCache:
    """Ready environments by hash, their locks, atomic publishing and the idle sweep."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.locks = root / ".locks"
        self.uv_cache = root / ".uv-cache"
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)  # traversable for the sandbox's user; data_dir may be 0711
        for private in (self.locks, self.uv_cache):
            private.mkdir(mode=0o700, exist_ok=True)

    def path(self, key: str) -> Path:
        return self.root / key

    def is_ready(self, key: str) -> bool:
        return (self.root / key / "pyvenv.cfg").is_file()

    # --- locks --------------------------------------------------------------------------

    def lock(self, key: str, *, shared: bool, cancelled: threading.Event | None = None) -> HeldLock:
        """Wait for `key`'s lock (shared or exclusive); JobStopped if `cancelled` is set
        meanwhile."""
        held = self._acquire(key, fcntl.LOCK_SH if shared else fcntl.LOCK_EX, cancelled, wait=True)
        assert held is not None
        return held

    def try_lock(self, key: str) -> HeldLock | None:
        """The exclusive lock if nobody holds any lock on `key` now, else None."""
        return self._acquire(key, fcntl.LOCK_EX, None, wait=False)

    def _acquire(
        self, key: str, mode: int, cancelled: threading.Event | None, *, wait: bool
    ) -> HeldLock | None:
        path = self.locks / f"{key}.lock"
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            while True:
                try:
                    fcntl.flock(fd, mode | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if not wait:
                        os.close(fd)
                        return None
                    if cancelled is not None and cancelled.wait(LOCK_POLL_S):
                        os.close(fd)
                        raise JobStopped("stopped while waiting for the environment") from None
                    if cancelled is None:
                        time.sleep(LOCK_POLL_S)
            # The sweep unlinks a lock file it holds; a lock on an unlinked file guards nothing.
            try:
                if os.fstat(fd).st_ino == os.stat(path).st_ino:
                    return HeldLock(fd)
            except FileNotFoundError:
                pass
            os.close(fd)

    # --- building and using -------------------------------------------------------------

    def new_build_folder(self, key: str) -> Path:
        """A fresh path for a build of `key` (not created: the installer makes it)."""
        return self.root / f".build-{key}-{uuid.uuid4().hex[:8]}"

    def publish(self, built: Path, key: str) -> Path:
        """Make `built` world-readable and rename it to `<root>/<key>` in one step (the caller
        holds `key`'s exclusive lock)."""
        make_world_readable(built)
        final = self.path(key)
        os.rename(built, final)
        return final

    def touch(self, key: str) -> None:
        marker = self.path(key) / LAST_USED
        marker.touch(mode=0o644)
        os.utime(marker)

    def last_used(self, key: str) -> float:
        folder = self.path(key)
        for path in (folder / LAST_USED, folder):
            try:
                return path.stat().st_mtime
            except FileNotFoundError:
                continue
        return 0.0

    # --- the idle sweep -----------------------------------------------------------------

    def sweep(self, idle_s: float, now: float | None = None) -> list[str]:
        """Remove environments unused for `idle_s` that no job holds, and builds left by a
        killed process; returns the hashes of the environments removed."""
        now = time.time() if now is None else now
        removed: list[str] = []
        for entry in sorted(self.root.iterdir()):
            name = entry.name
            if name.startswith(".build-"):
                self._remove_stale_build(entry)
            elif name.startswith(".trash-"):
                shutil.rmtree(entry, ignore_errors=True)
            elif HASH.match(name) and now - self.last_used(name) > idle_s:
                held = self.try_lock(name)
                if held is None:  # in use or being rebuilt
                    continue
                try:
                    if now - self.last_used(name) > idle_s:  # a job may have just touched it
                        trash = self.root / f".trash-{name}-{uuid.uuid4().hex[:8]}"
                        os.rename(entry, trash)
                        (self.locks / f"{name}.lock").unlink(missing_ok=True)
                        shutil.rmtree(trash, ignore_errors=True)
                        removed.append(name)
                finally:
                    held.release()
        for lock_file in self.locks.glob("*.lock"):  # left by builds that failed
            key = lock_file.stem
            if HASH.match(key) and not self.path(key).exists():
                held = self.try_lock(key)
                if held is not None:
                    lock_file.unlink(missing_ok=True)
                    held.release()
        return removed

    def _remove_stale_build(self, folder: Path) -> None:
        key = folder.name.removeprefix(".build-").rsplit("-", 1)[0]
        if not HASH.match(key):
            return
        held = self.try_lock(key)  # a build in progress holds its key's lock
        if held is not None:
            try:
                shutil.rmtree(folder, ignore_errors=True)
            finally:
                held.release()


def make_world_readable(folder: Path) -> None:
    """Folders 0755, files 0644 (0755 if executable by their owner); links left as they are."""
    for path in [folder, *folder.rglob("*")]:
        mode = path.lstat().st_mode
        if stat.S_ISLNK(mode):
            continue
        if stat.S_ISDIR(mode):
            path.chmod(0o755)
        else:
            path.chmod(0o755 if mode & stat.S_IXUSR else 0o644)
