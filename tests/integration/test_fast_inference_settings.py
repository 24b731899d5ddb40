"""The settings that make inference fast, as the service applies them: the `predictors:`
section, the watch source's settle interval, and built-in jobs not holding cores."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import yaml

from autoinfer.config import Config, PredictorsConfig, load_config
from autoinfer.db import Database
from autoinfer.events.watch import WatchSource
from autoinfer.jobs.service import JobService
from autoinfer.pipeline import EventPipeline
from autoinfer.runner import runs_in_predictor_pool
from autoinfer.service import AutoInferService
from autoinfer.storage.registry import StorageRegistry


def test_the_predictors_section_sizes_the_warm_pool(
    make_config: Callable[..., Config],
) -> None:
    settings = {
        "workers": 3,
        "batch_size": 4,
        "max_wait_ms": 7,
        "idle_s": 9,
        "decode_threads": 1,
        "threads_per_worker": 2,
    }
    service = AutoInferService(make_config(predictors=PredictorsConfig(**settings)))
    try:
        pool = service.predictors
        assert (pool.workers, pool.batch_size) == (3, 4)
        assert (pool.max_wait_s, pool.idle_s, pool.threads_per_worker) == (0.007, 9, 2)
        assert service.predictors is pool  # one pool for every job
    finally:
        service.db.dispose()


def test_by_default_the_pool_has_one_single_threaded_worker_per_core_up_to_four(
    make_config: Callable[..., Config],
) -> None:
    service = AutoInferService(make_config())
    try:
        pool = service.predictors
        cores = os.cpu_count() or 1
        assert pool.workers == min(cores, 4)
        assert pool.threads_per_worker == max(1, cores // pool.workers)
    finally:
        service.db.dispose()


def test_the_predictors_section_is_read_from_the_config_file_and_the_environment(
    tmp_path: Path,
) -> None:
    path = tmp_path / "autoinfer.yaml"
    path.write_text(yaml.safe_dump({"predictors": {"workers": 2, "batch_size": 8}}))
    config = load_config(path, env={"AUTOINFER_PREDICTORS__MAX_WAIT_MS": "5"})
    assert config.predictors.workers == 2
    assert config.predictors.batch_size == 8
    assert config.predictors.max_wait_ms == 5


def test_a_watch_source_settles_for_its_configured_interval(tmp_path: Path) -> None:
    path = tmp_path / "autoinfer.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "stores": {"local": {"type": "local", "root": "buckets"}},
                "sources": [
                    {"type": "watch", "store": "local", "settle_s": 0.2},
                    {"type": "watch", "store": "local"},
                ],
            }
        )
    )
    config = load_config(path, env={})
    db = Database(f"sqlite:///{tmp_path / 'autoinfer.db'}")
    storage = StorageRegistry(config.stores, base_dir=config.base_dir)
    try:
        configured = EventPipeline(config, db, JobService(db), storage)
        first, second = configured.sources
        assert isinstance(first, WatchSource) and isinstance(second, WatchSource)
        assert (first.settle_s, second.settle_s) == (0.2, 0.5)  # 0.5: the default
        overridden = EventPipeline(config, db, JobService(db), storage, settle_s=1.5)
        assert [source.settle_s for source in overridden.sources] == [1.5, 1.5]
    finally:
        db.dispose()


def test_only_jobs_of_built_in_models_without_commands_run_in_the_shared_pool() -> None:
    builtin = {"model": {"source_type": "builtin", "source_uri": "efficientnet_lite0"}}
    assert runs_in_predictor_pool(builtin)
    assert runs_in_predictor_pool({**builtin, "workers": []})
    assert not runs_in_predictor_pool({**builtin, "workers": ["python predict.py"]})
    local = {"model": {"source_type": "local", "source_uri": "/models/x"}}
    assert not runs_in_predictor_pool({**local, "workers": ["python predict.py"]})
