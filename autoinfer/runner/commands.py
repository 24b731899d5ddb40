"""A job's worker commands: each one a sandboxed process in its own process group, its output
pumped line by line into the job's log, killed with its whole group on stop or timeout.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from autoinfer.errors import JobFailed
from autoinfer.log_lines import read_lines
from autoinfer.runner.context import GIB, runs_in_predictor_pool
from autoinfer.sandbox import (
    BaseInterpreter,
    PythonEnvironment,
    SandboxUnavailable,
    WorkerRun,
    inherited,
)
from autoinfer.text import one_line

if TYPE_CHECKING:
    from autoinfer.runner.life import Runner

KILL_GRACE_S = 5.0


def job_environment(runner: Runner) -> dict[str, str]:
    """The process environment of a worker command (DESIGN.md's job environment)."""
    # An allow-list (autoinfer.sandbox.environ): the job's own variables, the locale, and
    # the sandbox's PATH (its environment's `bin/` first, else the base interpreter's, never
    # the service's venv) and HOME; nothing else of the service's environment.
    env = {**inherited(os.environ), **runner.ctx.sandbox.base_environment(python_of(runner))}
    paths = {
        "DATA_PATH": str(runner.data_dir),
        "OUTPUT_PATH": str(runner.output_dir),
        "MODEL_PATH": str(runner.model_dir),
    }
    for name, value in paths.items():
        env[f"AUTOINFER_{name}"] = value
        env[f"TRAINML_{name}"] = value
    env["AUTOINFER_JOB_ID"] = runner.job.id
    env["AUTOINFER_JOB_NAME"] = runner.job.name
    env["PYTHONUNBUFFERED"] = "1"
    env.update(runner.gpus.environment() if runner.gpus is not None else {})
    if runner.environment is not None:
        env["VIRTUAL_ENV"] = str(runner.environment.root)
    for variable in runner.spec.environment.env:
        env[variable.key] = runner.ctx.resolve_env(variable.value)
    for name in runner.spec.environment.secrets:
        env[name] = runner.ctx.resolve_env(f"secret:{name}")
    return env


def run_command(runner: Runner, command: str) -> None:
    runner.log.system(f"$ {command}")
    process = subprocess.Popen(
        runner.ctx.sandbox.argv(worker_run(runner, command)),
        cwd=runner.model_dir,
        env=job_environment(runner),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group, so stop kills the whole tree
    )
    readers = [
        threading.Thread(target=pump, args=(runner, process.stdout, "stdout"), daemon=True),
        threading.Thread(target=pump, args=(runner, process.stderr, "stderr"), daemon=True),
    ]
    for reader in readers:
        reader.start()
    while process.poll() is None:
        if runner.cancellation.event.wait(0.1):
            kill_process_group(process)
            break
        runner.log.flush_if_due()
    for reader in readers:
        reader.join(timeout=5)
    runner.log.flush()
    runner._check_cancelled()
    if process.returncode != 0:
        raise JobFailed(
            f"worker command '{command}' exited with code {process.returncode}"
            + last_error_line(runner)
        )


def check_sandbox(runner: Runner) -> None:
    """Fail at once, before any download, when worker commands cannot run here."""
    problem = None if runs_in_predictor_pool(runner.job.spec) else runner.ctx.sandbox.problem()
    if problem is not None:
        raise SandboxUnavailable(problem)


def python_of(runner: Runner) -> PythonEnvironment:
    return runner.environment if runner.environment is not None else BaseInterpreter()


def worker_run(runner: Runner, command: str) -> WorkerRun:
    """`command` with what its sandbox shows it: the job's folders, Python, GPUs, network."""
    devices = runner.gpus.device_paths() if runner.gpus is not None else []
    return WorkerRun(
        command,
        runner.workdir,
        runner.data_dir,
        runner.output_dir,
        runner.model_dir,
        python=python_of(runner),
        network=runner.spec.environment.network,
        devices=tuple(Path(device) for device in devices),
        tmp_bytes=runner.spec.resources.disk_size * GIB,
    )


def pump(runner: Runner, pipe: BinaryIO, stream: str) -> None:
    for line in read_lines(pipe):  # a huge line is cut as it is read, never held whole
        runner.log.write(stream, line)
        if stream == "stderr" and line.strip():
            runner._last_stderr = line.strip()
    pipe.close()


def last_error_line(runner: Runner) -> str:
    return f": {one_line(runner._last_stderr)}" if runner._last_stderr else ""


def kill_process_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, then SIGKILL what is left after a grace period."""
    for sig, wait in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            # The leader is gone; make sure no child in its group survives it.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            return
        except subprocess.TimeoutExpired:
            continue
