"""What a sandboxed worker command sees, and the bubblewrap command line that shows it that.

Pure: `bwrap_argv` turns a `JobView` (the job's folders, its environment's paths, its devices,
network or not) and the host's layout into an argv; nothing here touches the file system
except `HostLayout.detect`. The job's folders are bound at the same absolute paths they have
outside, so the AUTOINFER_*_PATH / TRAINML_*_PATH values the job reads stay true.

Two ways to start it:
- the service is not root: bwrap runs unprivileged, in a user namespace of its own
  (`--unshare-all`); the job keeps the service's uid, which owns its folders.
- the service is root: bwrap runs privileged without a user namespace (so it can bind any
  folder the service can read, whatever the modes of the folders above it), and the command
  drops to an unprivileged uid/gid with no groups and no capabilities (`setpriv`) before the
  job's own code starts. A user namespace is not used here on purpose: in one, the job's uid
  would map back to root outside.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

#: Host folders bound read-only as they are.
SYSTEM_READ_ONLY = ("/usr",)
#: Top-level folders that merged-/usr systems make symlinks into /usr.
MERGED_USR = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
#: What programs need of /etc (never shadow, never private keys); bound when present.
ETC_ENTRIES = (
    "/etc/hosts",
    "/etc/resolv.conf",
    "/etc/nsswitch.conf",
    "/etc/host.conf",
    "/etc/gai.conf",
    "/etc/protocols",
    "/etc/services",
    "/etc/ssl/certs",
    "/etc/ssl/openssl.cnf",
    "/etc/ca-certificates.conf",
    "/etc/ld.so.cache",
    "/etc/localtime",
    "/etc/timezone",
    "/etc/alternatives",
    "/etc/mime.types",
)
#: What device drivers' user-space libraries (CUDA, NVML) read of /sys: shown read-only, and
#: only to a job that was given devices.
DEVICE_SYS = ("/sys/bus", "/sys/class", "/sys/dev", "/sys/devices")
#: Mounted by bwrap itself; never created as plain folders.
_MOUNTED = ("/", "/tmp", "/proc", "/dev")


@dataclass(frozen=True)
class HostLayout:
    """Which top-level folders are symlinks into /usr, and which /etc entries exist."""

    symlinks: Mapping[str, str] = field(default_factory=dict)  # "/bin" → "usr/bin"
    folders: tuple[str, ...] = ()  # top-level folders that are real (not merged-/usr)
    etc: tuple[str, ...] = ()

    @classmethod
    def detect(cls) -> HostLayout:
        symlinks: dict[str, str] = {}
        folders: list[str] = []
        for top in MERGED_USR:
            if os.path.islink(top):
                symlinks[top] = os.readlink(top)
            elif os.path.isdir(top):
                folders.append(top)
        etc = tuple(entry for entry in ETC_ENTRIES if os.path.exists(entry))
        return cls(symlinks=symlinks, folders=tuple(folders), etc=etc)


@dataclass(frozen=True)
class RunAs:
    """The unprivileged identity a root service's job runs as."""

    uid: int
    gid: int


@dataclass(frozen=True)
class Limits:
    """Per-process resource limits, set with prlimit on the whole tree (they are inherited)."""

    open_files: int
    processes: int | None = None  # only meaningful when the job runs as a uid of its own
    data_bytes: int | None = None

    def prlimit_args(self) -> list[str]:
        args = [f"--nofile={self.open_files}:{self.open_files}"]
        if self.processes is not None:
            args.append(f"--nproc={self.processes}:{self.processes}")
        if self.data_bytes is not None:
            args.append(f"--data={self.data_bytes}:{self.data_bytes}")
        return args


@dataclass(frozen=True)
class JobView:
    """Everything of the host a worker command sees besides the read-only system."""

    cwd: Path
    read_write: tuple[Path, ...]  # the job's data/ and output/
    read_only: tuple[Path, ...]  # its model/ and its Python environment
    passwd: Path  # the /etc/passwd and /etc/group made for the sandbox
    group: Path
    devices: tuple[Path, ...] = ()  # device nodes it may use (its GPUs)
    network: bool = False
    tmp_bytes: int | None = None  # the size of its private /tmp


@dataclass(frozen=True)
class Tools:
    """The executables the command line names."""

    bwrap: str = "bwrap"
    setpriv: str = "/usr/bin/setpriv"
    prlimit: str = "/usr/bin/prlimit"
    shell: str = "/bin/sh"


def bwrap_argv(
    view: JobView,
    command: str,
    *,
    layout: HostLayout,
    tools: Tools = Tools(),
    run_as: RunAs | None = None,
    limits: Limits | None = None,
) -> list[str]:
    """The argv that runs `command` (a shell command line) as `view` describes."""
    argv: list[str] = []
    if limits is not None:
        argv += [tools.prlimit, *limits.prlimit_args(), "--"]
    argv.append(tools.bwrap)
    for folder in SYSTEM_READ_ONLY:
        argv += ["--ro-bind", folder, folder]
    for link, target in sorted(layout.symlinks.items()):
        argv += ["--symlink", target, link]
    for folder in layout.folders:
        argv += ["--ro-bind", folder, folder]
    argv += ["--proc", "/proc", "--dev", "/dev"]
    for device in view.devices:
        argv += ["--dev-bind", str(device), str(device)]
    if view.tmp_bytes is not None:
        argv += ["--size", str(view.tmp_bytes)]
    argv += ["--perms", "1777", "--tmpfs", "/tmp"]
    # Every bind below, as (flag, source, destination); shallow ones first.
    binds = [("--ro-bind", entry, entry) for entry in layout.etc]
    binds += [("--ro-bind", str(view.passwd), "/etc/passwd")]
    binds += [("--ro-bind", str(view.group), "/etc/group")]
    if view.devices:
        binds += [("--ro-bind-try", folder, folder) for folder in DEVICE_SYS]
    read_only = [p for p in view.read_only if not _under(p, SYSTEM_READ_ONLY)]
    binds += [("--ro-bind", str(p), str(p)) for p in read_only]
    binds += [("--bind", str(p), str(p)) for p in view.read_write]
    binds.sort(key=lambda bind: len(PurePosixPath(bind[2]).parts))
    # The folders above them, made readable and traversable: folders bwrap makes on its own
    # are 0700 when it runs privileged, closed to the job's uid.
    for folder in _folders_to_make([PurePosixPath(bind[2]) for bind in binds]):
        argv += ["--perms", "0755", "--dir", folder]
    for flag, source, destination in binds:
        argv += [flag, source, destination]
    argv += ["--chdir", str(view.cwd)]
    if run_as is None:
        argv.append("--unshare-all")
        if view.network:
            argv.append("--share-net")
    else:
        argv += ["--unshare-ipc", "--unshare-pid", "--unshare-uts", "--unshare-cgroup-try"]
        if not view.network:
            argv.append("--unshare-net")
    argv += ["--die-with-parent", "--new-session", "--"]
    if run_as is not None:
        argv += [
            tools.setpriv,
            f"--reuid={run_as.uid}",
            f"--regid={run_as.gid}",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--",
        ]
    argv += [tools.shell, "-c", command]
    return argv


def _folders_to_make(bound: Sequence[PurePosixPath]) -> list[str]:
    """The folders above each bind target that must exist in the sandbox's root, parents
    first; not the mounts bwrap makes itself (/, /tmp, /proc, /dev, /usr and below), nor
    bind targets, nor folders inside another bind (they exist there already)."""
    wanted = {parent for path in bound for parent in path.parents}
    return [
        str(folder)
        for folder in sorted(wanted, key=lambda p: (len(p.parts), str(p)))
        if str(folder) not in _MOUNTED
        and not _under(Path(folder), (*SYSTEM_READ_ONLY, "/proc"))
        and folder not in bound
        and not any(target in folder.parents for target in bound)
    ]


def _under(path: Path, roots: Iterable[str]) -> bool:
    return any(path == Path(root) or Path(root) in path.parents for root in roots)
