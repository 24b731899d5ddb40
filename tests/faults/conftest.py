"""Fixtures of the fault suite: the real service as a subprocess (see harness.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.service_harness import ServiceProcess, free_port, service_config


@pytest.fixture
def serve(tmp_path: Path, model_cache: Path) -> Iterator[Callable[..., ServiceProcess]]:
    """`serve(triggers=[...], **config)` writes a config in tmp_path and starts the service;
    every service started is killed at the end of the test."""
    started: list[ServiceProcess] = []

    def start(*, env: dict[str, str] | None = None, **options: Any) -> ServiceProcess:
        (tmp_path / "buckets").mkdir(exist_ok=True)
        config = service_config(tmp_path, port=free_port(), cache_dir=model_cache, **options)
        service = ServiceProcess(config, tmp_path, env=env)
        started.append(service)
        service.start()
        return service

    yield start
    for service in started:
        service.close()
