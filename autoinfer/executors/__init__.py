"""Executors claim queued jobs with leases and run them: locally or on a Ray cluster."""

from autoinfer.executors.base import Executor
from autoinfer.executors.local import LocalExecutor

__all__ = ["Executor", "LocalExecutor"]
