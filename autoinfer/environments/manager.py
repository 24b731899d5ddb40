"""A job's Python environment: found in the cache or built once, then held while it runs.

`EnvironmentManager.prepare` is the runner's one call: it works out the requirements and the
base interpreter, and returns a `JobEnvironment` (the contract with the sandbox: its
`bin_dir` goes first on PATH, its `read_only_paths` are bound read-only). Jobs with the same
requirements, Python and platform share one environment; the first builds it under an
exclusive lock while the others wait, then all hold a shared lock until `release`, so the
idle sweep never removes an environment a job is using.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from autoinfer.environments.builder import (
    REQUIREMENTS_FILE,
    Builder,
    BuildLog,
    PipBuilder,
    UvBuilder,
    find_uv,
    installer_env,
)
from autoinfer.environments.cache import EnvironmentCache, HeldLock
from autoinfer.environments.indexes import uv_index_settings
from autoinfer.environments.interpreters import BaseInterpreter, InterpreterFinder
from autoinfer.environments.requirements import collect, environment_key, python_request
from autoinfer.environments.settings import EnvironmentsConfig
from autoinfer.errors import ConfigError
from autoinfer.jobs.spec import Environment

log = logging.getLogger("autoinfer.environments")


@dataclass(frozen=True)
class JobEnvironment:
    """The environment a job's worker commands run with (set as `Runner.environment`)."""

    hash: str
    root: Path  # the virtual environment
    bin_dir: Path  # first on PATH: `python` and `pip` are the environment's
    python: Path
    interpreter: BaseInterpreter  # what it is based on
    read_only_paths: tuple[Path, ...]  # host paths a sandbox must bind read-only
    reused: bool

    @property
    def short(self) -> str:
        return self.hash[:12]


class EnvironmentManager:
    """Builds, shares and sweeps the per-model environments under one folder."""

    def __init__(
        self,
        root: Path,
        settings: EnvironmentsConfig | None = None,
        *,
        base_env: dict[str, str] | None = None,
    ) -> None:
        self.settings = settings or EnvironmentsConfig()
        self.cache = EnvironmentCache(root)
        self._env = installer_env(
            dict(os.environ if base_env is None else base_env), self.cache.uv_cache
        )
        uv_bin = find_uv() if self.settings.installer != "pip" else None
        if self.settings.installer == "uv" and uv_bin is None:
            raise ConfigError("environments.installer: uv is not installed (pip install uv)")
        self.builder: Builder
        if uv_bin:
            indexes = uv_index_settings(self._env)
            self.builder = UvBuilder(
                uv_bin, self._env, indexes, build_sdists=self.settings.build_sdists
            )
            self.index_origin = indexes.origin
        else:
            self.builder = PipBuilder(self._env, build_sdists=self.settings.build_sdists)
            self.index_origin = "pip's configuration"
        self.interpreters = InterpreterFinder(uv_bin, self._env)
        self._held: dict[str, list[HeldLock]] = {}
        self._held_lock = threading.Lock()

    # --- the runner's calls -------------------------------------------------------------

    def prepare(
        self,
        model_dir: Path,
        spec: Environment,
        job_log: BuildLog,
        cancelled: threading.Event | None = None,
    ) -> JobEnvironment:
        """The job's environment, built if no job built it before; the log says which.
        EnvironmentRejected/EnvironmentFailed (`environment: <reason>`) when it cannot be had."""
        requirements = collect(model_dir, list(spec.packages.pip))
        interpreter = self.interpreters.find(python_request(spec.type), asked_by=spec.type)
        key = environment_key(
            requirements, interpreter.identity, interpreter.platform, self.builder.name
        )
        short = key[:12]
        held = self.cache.lock(key, shared=True, cancelled=cancelled)
        reused = self.cache.is_ready(key)
        if not reused:
            held.release()
            held = self.cache.lock(key, shared=False, cancelled=cancelled)
            try:
                reused = self.cache.is_ready(key)  # built by another job while this one waited
                if not reused:
                    started = time.monotonic()
                    job_log.system(
                        f"environment {short}: building with {self.builder.name} on Python "
                        f"{interpreter.version} ({interpreter.executable}), "
                        f"{requirements.describe()}; indexes from {self.index_origin}"
                    )
                    self._build(key, interpreter, requirements.text(), job_log, cancelled)
                    job_log.system(
                        f"environment {short}: built in {time.monotonic() - started:.1f} s"
                    )
                held.share()
            except BaseException:
                held.release()
                raise
        self.cache.touch(key)
        if reused:
            job_log.system(
                f"environment {short}: reused (Python {interpreter.version}, {requirements.describe()})"
            )
        with self._held_lock:
            self._held.setdefault(key, []).append(held)
        root = self.cache.path(key)
        return JobEnvironment(
            hash=key,
            root=root,
            bin_dir=root / "bin",
            python=root / "bin" / "python",
            interpreter=interpreter,
            read_only_paths=(root, *interpreter.read_only_paths),
            reused=reused,
        )

    def release(self, environment: JobEnvironment) -> None:
        """The job is done with `environment`: it may be swept once idle."""
        with self._held_lock:
            held = self._held.get(environment.hash)
            lock = held.pop() if held else None
            if held == []:
                del self._held[environment.hash]
        if lock is not None:
            lock.release()

    # --- housekeeping -------------------------------------------------------------------

    def sweep(self, now: float | None = None) -> list[str]:
        """Remove environments idle for `idle_days` (none in use) and abandoned builds."""
        removed = self.cache.sweep(self.settings.idle_days * 86400, now)
        for key in removed:
            log.info(
                "environment %s removed: unused for %s day(s)", key[:12], self.settings.idle_days
            )
        return removed

    # --- building -----------------------------------------------------------------------

    def _build(
        self,
        key: str,
        interpreter: BaseInterpreter,
        requirements: str,
        job_log: BuildLog,
        cancelled: threading.Event | None,
    ) -> None:
        """Build into a temporary folder and rename it into place (the caller holds the
        exclusive lock); a failed or killed build leaves nothing that looks ready."""
        building = self.cache.new_build_folder(key)
        spec_file = self.cache.locks / f"{building.name}.txt"
        spec_file.write_text(requirements)
        try:
            self.builder.build(building, interpreter, spec_file, job_log, cancelled)
            shutil.copyfile(spec_file, building / REQUIREMENTS_FILE)
            final = self.cache.publish(building, key)
            self.builder.relocate(building, final)
        finally:
            spec_file.unlink(missing_ok=True)
            shutil.rmtree(building, ignore_errors=True)
