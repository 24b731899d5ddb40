"""Isolation of user code: the worker-command sandbox and what a job may name.

- `Sandbox` (`make_sandbox(config.sandbox)`): `bwrap` (bubblewrap; the default) or `none`.
- `WorkerRun`: one worker command as the runner hands it to the sandbox.
- `JobAdmission` / `PathPolicy`: confined local paths and the role that may run code.
"""

from autoinfer.sandbox.admission import JobAdmission, PathNotAllowed, PathPolicy, admission_for
from autoinfer.sandbox.backends import (
    BWRAP_MISSING,
    BwrapSandbox,
    NoSandbox,
    Sandbox,
    SandboxUnavailable,
    WorkerRun,
    make_sandbox,
)
from autoinfer.sandbox.environ import BaseInterpreter, PythonEnvironment, inherited
from autoinfer.sandbox.settings import SandboxConfig

__all__ = [
    "BWRAP_MISSING",
    "BaseInterpreter",
    "BwrapSandbox",
    "JobAdmission",
    "NoSandbox",
    "PathNotAllowed",
    "PathPolicy",
    "PythonEnvironment",
    "Sandbox",
    "SandboxConfig",
    "SandboxUnavailable",
    "WorkerRun",
    "admission_for",
    "inherited",
    "make_sandbox",
]
