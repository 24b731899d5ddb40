"""The process environment of a worker command: an allow-list, never the service's own.

A job gets its own variables (its folders, id and name, its spec's `env` and secrets, the
GPUs it was given) plus the locale and time zone; nothing else of the service's environment
(no AUTOINFER_* settings, no cloud credentials, no test canaries) reaches it.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

#: Service variables a job inherits: how text and times are shown, and the GPUs the process
#: running the job was given (Ray sets them on its worker; a local GPU grant overrides them).
INHERITED = ("LANG", "LANGUAGE", "TZ", "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER")
INHERITED_PREFIXES = ("LC_",)
#: Where a sandboxed job finds programs after its environment's own `bin/`.
SYSTEM_PATH = ("/usr/local/bin", "/usr/bin", "/bin")


class PythonEnvironment(Protocol):
    """A job's Python environment (built by autoinfer.environments): its `bin/` goes first on
    PATH, and the sandbox binds its folders read-only at the same paths."""

    @property
    def bin_dir(self) -> Path: ...

    @property
    def read_only_paths(self) -> tuple[Path, ...]: ...


class BaseInterpreter:
    """The Python that the service's own virtual environment was made from (`sys.base_prefix`),
    never the service's venv: the job's `python` when it has no environment of its own."""

    @property
    def bin_dir(self) -> Path:
        return Path(sys.base_prefix) / "bin"

    @property
    def read_only_paths(self) -> tuple[Path, ...]:
        return (Path(sys.base_prefix).resolve(),)


def inherited(service_env: Mapping[str, str]) -> dict[str, str]:
    """The locale and time-zone variables of `service_env`."""
    return {
        name: value
        for name, value in service_env.items()
        if name in INHERITED or name.startswith(INHERITED_PREFIXES)
    }
