"""Who may read what under `data_dir`: its owner, and other users only where they must.

The data folder holds the database (jobs, events, hashed keys, encrypted secrets), the master
key, the bootstrap API key, the model cache and the gallery. It is made `0711`: other users
may pass through it but not list it. Every entry in it is the owner's alone (files `0600`,
folders `0700`, so whatever is created inside them later is out of reach too), except:

- `scratch/` is `0711`: a job's sandbox runs as an unprivileged user that must reach its own
  scratch folder (the runner and the sandbox set that folder's own mode);
- `environments/` keeps the modes the environment cache gives it (readable by the sandbox's
  user: the jobs' Python environments).

`secure_data_dir` runs at every start, so a deployment made before these rules is tightened
too; `private_file` creates a file `0600` from the start (the SQLite database is created
that way, and SQLite gives its `-wal` and `-shm` files the database's mode).
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("autoinfer.file_modes")

DATA_DIR_MODE = 0o711
PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700
#: Entries of data_dir that other users need: name → the mode it gets (None: left as it is).
SHARED_ENTRIES: dict[str, int | None] = {"scratch": 0o711, "environments": None}
#: Folders made at start so that they never exist with looser modes.
PRIVATE_DIRS = ("gallery", "cache")


def secure_data_dir(data_dir: Path) -> None:
    """Create `data_dir` (0711) and its private folders (0700), and tighten what is already
    there: top-level files to 0600 and folders to 0700, the shared entries to their modes.
    Symbolic links are left alone; an entry that cannot be changed is logged, not fatal."""
    data_dir.mkdir(parents=True, exist_ok=True)
    _set_mode(data_dir, DATA_DIR_MODE)
    for name in PRIVATE_DIRS:
        (data_dir / name).mkdir(mode=PRIVATE_DIR_MODE, exist_ok=True)
    (data_dir / "scratch").mkdir(mode=0o711, exist_ok=True)
    for entry in os.scandir(data_dir):
        if entry.is_symlink():
            continue
        if entry.name in SHARED_ENTRIES:
            mode = SHARED_ENTRIES[entry.name]
            if mode is not None:
                _set_mode(Path(entry.path), mode)
            continue
        wanted = PRIVATE_DIR_MODE if entry.is_dir(follow_symlinks=False) else PRIVATE_FILE_MODE
        _set_mode(Path(entry.path), wanted)


def private_file(path: Path) -> Path:
    """Create `path` empty with mode 0600 if it does not exist (and make it 0600 if it does)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    except FileExistsError:
        _set_mode(path, PRIVATE_FILE_MODE)
    else:
        os.close(fd)
    return path


def _set_mode(path: Path, mode: int) -> None:
    try:
        if stat.S_IMODE(path.lstat().st_mode) != mode:
            path.chmod(mode)
    except FileNotFoundError:
        return
    except OSError as error:
        log.warning("cannot set mode %o on %s: %s", mode, path, error.strerror or error)
