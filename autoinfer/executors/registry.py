"""Which executor a configuration names: `executor.type` → the factory that builds it.

The one place that knows which executors exist; the service asks `make_executor` and never
which kind it got.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from autoinfer.config import Config
    from autoinfer.executors.base import Executor
    from autoinfer.jobs.service import JobService
    from autoinfer.runner import RunnerContext

#: Builds an executor for the service's configuration: it claims jobs from `jobs` and runs
#: them in `ctx`.
ExecutorFactory = Callable[["RunnerContext", "JobService", "Config"], "Executor"]


def _local(ctx: RunnerContext, jobs: JobService, config: Config) -> Executor:
    from autoinfer.executors.gpus import configured_inventory
    from autoinfer.executors.local import LocalExecutor

    gpus = None if config.gpus is None else configured_inventory(config.gpus)
    return LocalExecutor(
        ctx,
        jobs,
        max_jobs=config.executor.max_jobs,
        lease_s=config.executor.lease_s,
        gpus=gpus,
        pool_jobs=config.predictors.job_limit,
    )


def _ray(ctx: RunnerContext, jobs: JobService, config: Config) -> Executor:
    from autoinfer.executors.ray import RayExecutor  # the optional `ray` extra

    return RayExecutor(
        ctx, jobs, config.executor, cache_dir=config.cache_path, predictors=config.predictors
    )


EXECUTORS: dict[str, ExecutorFactory] = {"local": _local, "ray": _ray}


def make_executor(ctx: RunnerContext, jobs: JobService, config: Config) -> Executor:
    """The executor `config.executor.type` names (the config model allows only known ones)."""
    return EXECUTORS[config.executor.type](ctx, jobs, config)
