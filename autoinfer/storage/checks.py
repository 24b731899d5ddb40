"""Which checks `autoinfer doctor` runs for stores and sources: one entry per kind of backend.

The doctor runs every entry's `BackendChecks` (autoinfer.findings) over the configuration;
each picks its own stores and sources, so the doctor never asks which kind a store is.
"""

from __future__ import annotations

from collections.abc import Callable

from autoinfer.config import Config
from autoinfer.findings import BackendChecks


def _local(config: Config, resolve: Callable[[str], str]) -> BackendChecks:
    from autoinfer.storage.local_checks import LocalStoreChecks

    return LocalStoreChecks(config)


def _s3(config: Config, resolve: Callable[[str], str]) -> BackendChecks:
    from autoinfer.storage.s3.checks import S3Checks  # boto3 only when doctor runs

    return S3Checks(config, resolve)


#: In the order their findings are reported.
CHECKS: tuple[Callable[[Config, Callable[[str], str]], BackendChecks], ...] = (_local, _s3)


def backend_checks(config: Config, resolve: Callable[[str], str]) -> list[BackendChecks]:
    """Each kind of backend's checks over `config`; `resolve` reads `secret:NAME` values."""
    return [make(config, resolve) for make in CHECKS]
