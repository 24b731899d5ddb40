"""How a worker command is started: in a bubblewrap sandbox (`bwrap`) or as it is (`none`).

Both implement `Sandbox`; the runner asks it for the command's argv and its base variables
and never which one it has. `make_sandbox` picks one from the config.
"""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from autoinfer.errors import JobFailed
from autoinfer.sandbox.environ import SYSTEM_PATH, BaseInterpreter, PythonEnvironment
from autoinfer.sandbox.policy import HostLayout, JobView, Limits, RunAs, Tools, bwrap_argv
from autoinfer.sandbox.settings import SandboxConfig

BWRAP_MISSING = (
    "bwrap not found: install bubblewrap (apt-get install bubblewrap) "
    "or set sandbox: none in the config"
)
UNSANDBOXED_WARNING = (
    "sandbox: none — worker commands run as the service's user and can read everything it can "
    "(its data folder, keys and secrets included); use only with trusted model code"
)
SELF_TEST_TIMEOUT_S = 20.0


class SandboxUnavailable(JobFailed):
    """Worker commands cannot run: the configured sandbox is missing on this machine."""

    code = "sandbox_unavailable"


@dataclass(frozen=True)
class WorkerRun:
    """One worker command of one job attempt, as the runner hands it over."""

    command: str
    workdir: Path  # the attempt's scratch folder, holding the three below
    data_dir: Path
    output_dir: Path
    model_dir: Path
    python: PythonEnvironment = field(default_factory=BaseInterpreter)
    network: bool | None = None  # None: the sandbox's default
    devices: tuple[Path, ...] = ()
    tmp_bytes: int | None = None


class Sandbox(Protocol):
    """Starts worker commands with only what their job may see."""

    kind: str
    config: SandboxConfig  # what it was made from (a Ray node makes its own from it)

    def problem(self) -> str | None:
        """Why worker commands cannot run here (one line), or None."""
        ...

    def base_environment(self, python: PythonEnvironment) -> dict[str, str]:
        """PATH and HOME of a worker command whose Python is `python`."""
        ...

    def argv(self, run: WorkerRun) -> list[str]:
        """The argv that runs `run.command` (a shell command line); prepares its folders."""
        ...

    def self_test(self) -> str | None:
        """Run a trivial command the way jobs run; None if it worked, else why not."""
        ...

    def describe(self) -> str:
        """One line for `doctor` and the start-up log."""
        ...


class NoSandbox:
    """`sandbox: none`: the command runs as the service's user, seeing what it sees; only the
    environment variables are still the job's own."""

    kind = "none"

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config

    def problem(self) -> str | None:
        return None

    def base_environment(self, python: PythonEnvironment) -> dict[str, str]:
        service_bin = str(Path(sys.prefix) / "bin")
        host_path = [
            p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != service_bin
        ]
        return {
            "PATH": os.pathsep.join([str(python.bin_dir), *host_path]),
            "HOME": os.environ.get("HOME", "/tmp"),
        }

    def argv(self, run: WorkerRun) -> list[str]:
        return ["/bin/sh", "-c", run.command]

    def self_test(self) -> str | None:
        return None

    def describe(self) -> str:
        return UNSANDBOXED_WARNING


class BwrapSandbox:
    """`sandbox: bwrap`: bubblewrap with the job's folders, read-only system and environment,
    a private /tmp, no network unless allowed, an unprivileged uid when the service is root."""

    kind = "bwrap"

    def __init__(
        self,
        config: SandboxConfig,
        *,
        which: Callable[[str], str | None] = shutil.which,
        is_root: bool | None = None,
    ) -> None:
        self.config = config
        self._which = which
        self.is_root = os.geteuid() == 0 if is_root is None else is_root
        self._layout: HostLayout | None = None

    # --- Sandbox ------------------------------------------------------------------------

    def problem(self) -> str | None:
        if self._which("bwrap") is None:
            return BWRAP_MISSING
        if self.is_root:
            for tool in ("setpriv", "prlimit"):
                if self._which(tool) is None:
                    return (
                        f"{tool} not found: install util-linux, which runs root's jobs as an "
                        "unprivileged user, or set sandbox: none in the config"
                    )
        return None

    def base_environment(self, python: PythonEnvironment) -> dict[str, str]:
        return {
            "PATH": os.pathsep.join([str(python.bin_dir), *SYSTEM_PATH]),
            "HOME": "/tmp",
        }

    def argv(self, run: WorkerRun) -> list[str]:
        problem = self.problem()
        if problem is not None:
            raise SandboxUnavailable(problem)
        run_as = RunAs(self.config.uid, self.config.gid) if self.is_root else None
        passwd, group = self._identity_files(run.workdir / "sandbox-etc", run_as)
        if run_as is not None:
            # The job's own folders become the job's; every other path it sees is read-only.
            for folder in (run.data_dir, run.output_dir, run.model_dir):
                _chown_tree(folder, run_as.uid, run_as.gid)
        view = JobView(
            cwd=run.model_dir,
            read_write=(run.data_dir, run.output_dir),
            read_only=(run.model_dir, *run.python.read_only_paths),
            passwd=passwd,
            group=group,
            devices=run.devices,
            network=self.config.network if run.network is None else run.network,
            tmp_bytes=run.tmp_bytes,
        )
        return bwrap_argv(
            view,
            run.command,
            layout=self.layout,
            tools=self.tools(),
            run_as=run_as,
            limits=self.limits(),
        )

    def self_test(self) -> str | None:
        problem = self.problem()
        if problem is not None:
            return problem
        with tempfile.TemporaryDirectory(prefix="autoinfer-sandbox-test-") as temp:
            workdir = Path(temp)
            data, output, model = (workdir / name for name in ("data", "output", "model"))
            for folder in (data, output, model):
                folder.mkdir()
            # Its output folder writable, the host's /etc/shadow out of sight.
            probe = f"test -w {shlex.quote(str(output))} && test ! -e /etc/shadow"
            argv = self.argv(WorkerRun(probe, workdir, data, output, model))
            try:
                result = subprocess.run(
                    argv,
                    env=self.base_environment(BaseInterpreter()),
                    capture_output=True,
                    text=True,
                    timeout=SELF_TEST_TIMEOUT_S,
                    check=False,
                )
            except (OSError, subprocess.TimeoutExpired) as error:
                return f"bwrap could not run a test command: {error}"
        if result.returncode != 0:
            detail = " ".join(result.stderr.split())[:300] or f"exit code {result.returncode}"
            return f"bwrap could not run a test command: {detail}"
        return None

    def describe(self) -> str:
        who = f"uid {self.config.uid}" if self.is_root else "the service's uid in a user namespace"
        network = "on" if self.config.network else "off"
        return f"sandbox: bwrap (jobs run as {who}; network {network} unless a job asks)"

    # --- parts --------------------------------------------------------------------------

    @property
    def layout(self) -> HostLayout:
        if self._layout is None:
            self._layout = HostLayout.detect()
        return self._layout

    def tools(self) -> Tools:
        def found(name: str, default: str) -> str:
            return self._which(name) or default

        return Tools(
            bwrap=found("bwrap", "bwrap"),
            setpriv=found("setpriv", "/usr/bin/setpriv"),
            prlimit=found("prlimit", "/usr/bin/prlimit"),
        )

    def limits(self) -> Limits:
        memory = self.config.memory_mb
        return Limits(
            open_files=self.config.open_files,
            # RLIMIT_NPROC counts every process of the real uid: only a uid of the jobs' own
            # makes it a limit on the jobs rather than on the whole service.
            processes=self.config.processes if self.is_root else None,
            data_bytes=memory * 1024 * 1024 if memory is not None else None,
        )

    def _identity_files(self, folder: Path, run_as: RunAs | None) -> tuple[Path, Path]:
        """An /etc/passwd and /etc/group naming only root, nobody and the job's user."""
        folder.mkdir(parents=True, exist_ok=True)
        if run_as is not None:
            uid, gid, name = run_as.uid, run_as.gid, "job"
        else:
            uid, gid = os.getuid(), os.getgid()
            name = _user_name(uid)
        users = {0: ("root", 0), 65534: ("nobody", 65534), uid: (name, gid)}
        groups = {0: "root", 65534: "nogroup", gid: name}
        passwd = folder / "passwd"
        group = folder / "group"
        passwd.write_text(
            "".join(
                f"{user}:x:{number}:{g}:{user}:/tmp:/usr/sbin/nologin\n"
                for number, (user, g) in sorted(users.items())
            )
        )
        group.write_text("".join(f"{n}:x:{number}:\n" for number, n in sorted(groups.items())))
        for path in (folder, passwd, group):
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        return passwd, group


def make_sandbox(config: SandboxConfig) -> Sandbox:
    """The sandbox `config.type` names."""
    return _KINDS[config.type](config)


_KINDS: Mapping[str, Callable[[SandboxConfig], Sandbox]] = {
    "bwrap": BwrapSandbox,
    "none": NoSandbox,
}


def _chown_tree(folder: Path, uid: int, gid: int) -> None:
    if not folder.exists():
        return
    os.lchown(folder, uid, gid)
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            os.lchown(os.path.join(root, name), uid, gid)


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return "job"
