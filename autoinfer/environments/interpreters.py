"""Which installed Python a job's environment is based on.

Candidates come from `uv python list --only-installed` (never a download), else from the
usual names on PATH. Each is asked for its real executable, version and prefix. Worker
commands run in a sandbox as an unprivileged user that sees only what is bound for it, so an
interpreter whose every path component is world-traversable (Debian's `/usr/bin/python3.11`)
is preferred over one under a private home (`/root/.pyenv/...`).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from autoinfer.errors import EnvironmentRejected

PROBE = (
    "import json, os, platform, sys, sysconfig; print(json.dumps({"
    "'executable': os.path.realpath(getattr(sys, '_base_executable', '') or sys.executable),"
    "'version': platform.python_version(),"
    "'implementation': sys.implementation.name,"
    "'prefix': sys.base_prefix,"
    "'stdlib': sysconfig.get_paths()['stdlib'],"
    "'platform': sysconfig.get_platform(),"
    "'libc': '-'.join(platform.libc_ver())}))"
)
PROBE_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class BaseInterpreter:
    """An installed Python that environments are made from."""

    executable: Path
    version: str  # e.g. "3.11.2"
    implementation: str  # e.g. "cpython"
    prefix: Path  # sys.base_prefix
    stdlib: Path
    platform: str  # e.g. "linux-x86_64-glibc-2.36"
    world_readable: bool  # every path component traversable by other users

    @property
    def minor(self) -> str:
        return ".".join(self.version.split(".")[:2])

    @property
    def identity(self) -> str:
        """What the cache key records of it: environments link to this exact interpreter."""
        return f"{self.implementation}-{self.version} {self.executable}"

    @property
    def read_only_paths(self) -> tuple[Path, ...]:
        """Host paths a sandbox must bind for an environment on this interpreter to run."""
        paths = [self.prefix]
        if not self.stdlib.is_relative_to(self.prefix):
            paths.append(self.stdlib)
        return tuple(paths)


class InterpreterFinder:
    """Finds (and remembers) the base interpreter for a requested `3.x` version."""

    def __init__(self, uv_bin: str | None, env: dict[str, str]) -> None:
        self._uv, self._env = uv_bin, env
        self._found: dict[str, BaseInterpreter] = {}

    def find(self, version: str | None, *, asked_by: str | None = None) -> BaseInterpreter:
        """The best installed interpreter for `version` (default: the service's own minor
        version). EnvironmentRejected naming what is installed when there is none."""
        wanted = version or f"{sys.version_info.major}.{sys.version_info.minor}"
        if wanted in self._found:
            return self._found[wanted]
        matches = [i for i in self._probe_all(self._candidates(wanted)) if i.minor == wanted]
        if not matches:
            installed = ", ".join(self.installed_versions()) or "none found"
            who = f"environment.type {asked_by}: " if asked_by else ""
            raise EnvironmentRejected(
                f"environment: {who}Python {wanted} is not available on this host; "
                f"installed: {installed}"
            )
        # Prefer one the sandbox's user can reach, then the newest patch release.
        best = max(
            matches,
            key=lambda i: (
                i.world_readable,
                tuple(int(p) for p in i.version.split(".")[:3] if p.isdigit()),
            ),
        )
        self._found[wanted] = best
        return best

    def installed_versions(self) -> list[str]:
        """The `3.x` versions installed on this host."""
        versions = {i.minor for i in self._probe_all(self._candidates(None))}
        return sorted(versions, key=lambda v: tuple(int(p) for p in v.split(".")))

    def _candidates(self, version: str | None) -> list[str]:
        paths: list[str] = []
        if self._uv:
            command = [self._uv, "python", "list", "--only-installed", "--output-format", "json"]
            if version:
                command.insert(3, version)
            try:
                result = subprocess.run(
                    command,
                    capture_output=True,
                    text=True,
                    env=self._env,
                    timeout=PROBE_TIMEOUT_S,
                    check=False,
                )
                paths += [entry["path"] for entry in json.loads(result.stdout or "[]")]
            except (OSError, subprocess.TimeoutExpired, ValueError, KeyError, TypeError):
                pass
        names = [f"python{version}"] if version else ["python3"]
        for name in names:
            for folder in ("/usr/bin", "/usr/local/bin"):
                if os.access(f"{folder}/{name}", os.X_OK):
                    paths.append(f"{folder}/{name}")
            found = shutil.which(name, path=self._env.get("PATH"))
            if found:
                paths.append(found)
        paths.append(sys.executable)
        return list(dict.fromkeys(paths))

    def _probe_all(self, paths: list[str]) -> list[BaseInterpreter]:
        found: dict[Path, BaseInterpreter] = {}
        for path in paths:
            interpreter = probe(path, self._env)
            if interpreter is not None:
                found.setdefault(interpreter.executable, interpreter)
        return list(found.values())


def probe(path: str, env: dict[str, str]) -> BaseInterpreter | None:
    """Ask the interpreter at `path` what it is; None if it does not answer."""
    try:
        result = subprocess.run(
            [path, "-I", "-c", PROBE],
            capture_output=True,
            text=True,
            env=env,
            timeout=PROBE_TIMEOUT_S,
            check=False,
        )
        facts = json.loads(result.stdout) if result.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return None
    if not facts:
        return None
    executable, prefix = Path(facts["executable"]), Path(facts["prefix"])
    return BaseInterpreter(
        executable=executable,
        version=facts["version"],
        implementation=facts["implementation"],
        prefix=prefix,
        stdlib=Path(facts["stdlib"]),
        platform=f"{facts['platform']}-{facts['libc']}",
        world_readable=world_traversable(executable) and world_traversable(prefix),
    )


def world_traversable(path: Path) -> bool:
    """Whether a user with no rights of its own can reach `path`: every folder on the way
    (and the path itself) has the others-execute bit."""
    try:
        real = path.resolve()
        for part in [*reversed(real.parents), real]:
            if not os.stat(part).st_mode & stat.S_IXOTH:
                return False
    except OSError:
        return False
    return True
