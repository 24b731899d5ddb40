"""Making one virtual environment: `uv venv` + `uv pip install` (or `python -m venv` + pip
where uv is missing), with the installer's output streamed line by line to the job's log and
a failure condensed to the resolver's one-line reason.

A builder writes into a folder it is given (a temporary one; the cache renames it into place
when the build succeeded) and never touches the service's own environment.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Protocol

from autoinfer.environments.indexes import IndexSettings
from autoinfer.environments.interpreters import BaseInterpreter
from autoinfer.errors import EnvironmentFailed, EnvironmentRejected, JobStopped

REQUIREMENTS_FILE = "autoinfer-requirements.txt"  # what the environment was built from
KILL_WAIT_S = 5.0
# Phrases of a resolver that will answer the same next time: the job is not retried.
UNSATISFIABLE = (
    "No solution found",
    "not found in the package registry",
    "Could not find a version that satisfies",
    "No matching distribution found",
    "ResolutionImpossible",
    "is not available on this host",
    "has no usable wheels",
    "Building source distributions is disabled",
)


class BuildLog(Protocol):
    """Where a build's lines go: the job's log (runner.JobLog)."""

    def write(self, stream: str, line: str) -> None: ...

    def system(self, message: str) -> None: ...


class Builder(Protocol):
    """Makes a virtual environment at `target` with `requirements` installed."""

    name: str  # recorded in the cache key

    def build(
        self,
        target: Path,
        interpreter: BaseInterpreter,
        requirements: Path,
        log: BuildLog,
        cancelled: threading.Event | None,
    ) -> None: ...

    def relocate(self, built: Path, final: Path) -> None:
        """Fix what names the build folder after it was renamed to `final`."""
        ...


class UvBuilder:
    """`uv venv --relocatable` then `uv pip install` (pip included, so `pip` is the
    environment's own); uv's cache is shared by every build, Pythons are never downloaded."""

    name = "uv"

    def __init__(
        self, uv_bin: str, env: dict[str, str], indexes: IndexSettings, *, build_sdists: bool
    ) -> None:
        self.uv_bin, self.env, self.indexes, self.build_sdists = uv_bin, env, indexes, build_sdists

    def build(
        self,
        target: Path,
        interpreter: BaseInterpreter,
        requirements: Path,
        log: BuildLog,
        cancelled: threading.Event | None,
    ) -> None:
        env = {**self.env, **self.indexes.env}
        run_installer(
            [
                self.uv_bin,
                "venv",
                "--no-project",
                "--relocatable",
                "--python",
                str(interpreter.executable),
                str(target),
            ],
            env,
            log,
            cancelled,
        )
        install = [
            self.uv_bin,
            "pip",
            "install",
            "--python",
            str(target / "bin" / "python"),
            *self.indexes.args,
            "-r",
            str(requirements),
            "pip",
        ]
        if not self.build_sdists:
            install.insert(3, "--no-build")
        run_installer(install, env, log, cancelled)

    def relocate(self, built: Path, final: Path) -> None:
        """Nothing: a relocatable uv environment names no absolute path of its own."""


class PipBuilder:
    """The fallback where uv is missing: `python -m venv` (with pip), then pip, which reads
    the host's pip configuration itself."""

    name = "pip"

    def __init__(self, env: dict[str, str], *, build_sdists: bool) -> None:
        self.env, self.build_sdists = env, build_sdists

    def build(
        self,
        target: Path,
        interpreter: BaseInterpreter,
        requirements: Path,
        log: BuildLog,
        cancelled: threading.Event | None,
    ) -> None:
        run_installer(
            [str(interpreter.executable), "-m", "venv", str(target)], self.env, log, cancelled
        )
        install = [
            str(target / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--no-input",
            "--disable-pip-version-check",
            "-r",
            str(requirements),
        ]
        if not self.build_sdists:
            install += ["--only-binary", ":all:"]
        run_installer(install, self.env, log, cancelled)

    def relocate(self, built: Path, final: Path) -> None:
        """pip's scripts start with `#!<build folder>/bin/python`: point them at `final`."""
        old, new = str(built).encode(), str(final).encode()
        for script in (final / "bin").iterdir():
            if script.is_file() and not script.is_symlink():
                data = script.read_bytes()
                if data.startswith(b"#!") and old in data:
                    script.write_bytes(data.replace(old, new))


def run_installer(
    command: Sequence[str],
    env: dict[str, str],
    log: BuildLog,
    cancelled: threading.Event | None,
) -> None:
    """Run one installer step from `/` (so no project's settings apply), its output lines to
    `log` as they come; EnvironmentRejected/EnvironmentFailed with the condensed reason when
    it fails, JobStopped when `cancelled` is set meanwhile (the step is killed)."""
    output: list[str] = []
    process = subprocess.Popen(
        list(command),
        cwd="/",
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )

    def pump(pipe: IO[bytes], stream: str) -> None:
        for raw in iter(pipe.readline, b""):
            line = raw.decode("utf-8", errors="replace").rstrip()
            if line:
                output.append(line)
                log.write(stream, line)
        pipe.close()

    readers = [
        threading.Thread(target=pump, args=(process.stdout, "stdout"), daemon=True),
        threading.Thread(target=pump, args=(process.stderr, "stderr"), daemon=True),
    ]
    for reader in readers:
        reader.start()
    stopped = False
    while process.poll() is None:
        if cancelled is not None and cancelled.wait(0.1):
            stopped = True
            _kill(process)
            break
        if cancelled is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(0.1)
    for reader in readers:
        reader.join(timeout=5)
    if stopped:
        raise JobStopped("stopped while the environment was being built")
    if process.returncode != 0:
        reason = (
            failure_reason(output)
            or f"{Path(command[0]).name} exited with code {process.returncode}"
        )
        error = (
            EnvironmentRejected if any(p in reason for p in UNSATISFIABLE) else EnvironmentFailed
        )
        raise error(f"environment: {reason}")


def failure_reason(lines: Sequence[str]) -> str:
    """The installer's reason in one line: uv's `error: ...` and its `cause:`s, or pip's
    `ERROR:` lines, without decoration (`No solution found when resolving dependencies:
    Because ... we can conclude that your requirements are unsatisfiable.`)."""
    start = next(
        (i for i, line in enumerate(lines) if re.match(r"\s*(error:|ERROR:|×)", line)), None
    )
    if start is None:
        return ""
    parts: list[str] = []
    for line in lines[start:]:
        text = re.sub(r"^[\s×╰─▶│]*", "", line)
        text = re.sub(r"^(error|ERROR|cause|Caused by):\s*", "", text).strip()
        if not text or text.lower().startswith(("hint:", "help:", "note:")):
            if text.lower().startswith(("hint:", "help:")):
                break
            continue
        parts.append(text)
    reason = ""
    for part in parts:
        if not reason:
            reason = part
        elif reason.endswith(":"):
            reason = f"{reason} {part}"
        else:
            reason = f"{reason}: {part}"
    return reason


def _kill(process: subprocess.Popen[bytes]) -> None:
    import signal

    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(KILL_WAIT_S)
            return
        except subprocess.TimeoutExpired:
            continue


def installer_env(base: dict[str, str], cache_dir: Path) -> dict[str, str]:
    """The installer's process environment: the service's, less its own settings and cloud
    credentials, with uv's cache in the data folder and Python downloads off."""
    hidden = ("AUTOINFER_", "TRAINML_", "AWS_", "VIRTUAL_ENV", "PYTHONHOME", "PYTHONPATH")
    env = {k: v for k, v in base.items() if not k.startswith(hidden)}
    env.update(
        UV_CACHE_DIR=str(cache_dir),
        UV_PYTHON_DOWNLOADS="never",
        UV_NO_PROGRESS="1",
        PIP_DISABLE_PIP_VERSION_CHECK="1",
    )
    return env


def find_uv() -> str | None:
    """The uv binary the `uv` package installed (or one on PATH); None if there is none."""
    try:
        import uv  # the PyPI package ships the binary

        return str(uv.find_uv_bin())
    except (ImportError, FileNotFoundError):
        pass
    candidate = Path(sys.executable).parent / "uv"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    import shutil

    return shutil.which("uv")
