"""Per-model Python environments: built with uv from a model's requirements, cached by hash
under `<data_dir>/environments/`, shared by every job that needs the same, swept when idle."""

from autoinfer.environments.interpreters import BaseInterpreter
from autoinfer.environments.manager import EnvironmentManager, JobEnvironment
from autoinfer.environments.settings import EnvironmentsConfig

__all__ = ["BaseInterpreter", "EnvironmentManager", "EnvironmentsConfig", "JobEnvironment"]
