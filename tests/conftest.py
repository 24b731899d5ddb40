"""Shared fixtures: real services on loopback, real SQLite files, the seed data."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from autoinfer.config import Config, ExecutorConfig

if TYPE_CHECKING:
    from autoinfer.service import AutoInferService

pytest_plugins = ["tests.s3_server", "tests.pg_server"]

DATA = Path(__file__).parent / "data"
SEED_ZIP = DATA / "images.zip"
EXAMPLE_EVENT = DATA / "example_event.json"
# The true ImageNet class of each seed image, by WordNet id.
SEED_TRUTH = {
    "ILSVRC2012_val_00002399.JPEG": ("n04371774", "swing"),
    "ILSVRC2012_val_00005054.JPEG": ("n02087394", "Rhodesian ridgeback"),
    "ILSVRC2012_val_00012512.JPEG": ("n03337140", "file cabinet"),
    "ILSVRC2012_val_00022914.JPEG": ("n09421951", "sandbar"),
    "ILSVRC2012_val_00028089.JPEG": ("n02088632", "bluetick"),
}


def pytest_configure(config: pytest.Config) -> None:
    """Stop at once, in one line, when worker commands cannot be sandboxed here: without
    bubblewrap every test that runs one would fail on its own."""
    import shutil

    from autoinfer.sandbox import BwrapSandbox, SandboxConfig

    if shutil.which("bwrap") is None:
        raise pytest.UsageError("bwrap (bubblewrap) is missing: apt-get install bubblewrap")
    failure = BwrapSandbox(SandboxConfig()).self_test()
    if failure is not None:
        raise pytest.UsageError(f"bwrap cannot start a sandbox here: {failure}")


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One model cache for the whole session, so the ONNX export happens once."""
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture
def seed_zip() -> Path:
    return SEED_ZIP


@pytest.fixture
def seed_images(tmp_path: Path) -> Path:
    folder = tmp_path / "seed-images"
    with zipfile.ZipFile(SEED_ZIP) as archive:
        archive.extractall(folder)
    return folder


@pytest.fixture
def make_config(tmp_path: Path, model_cache: Path) -> Callable[..., Config]:
    def make(**overrides: object) -> Config:
        values: dict[str, object] = {
            "data_dir": tmp_path / "service",
            "cache_dir": model_cache,
            "executor": ExecutorConfig(max_jobs=2, lease_s=5),
            # Jobs of a secure service may name local paths only where allowed: the test's
            # own folder (its data_dir inside stays off limits), the seed data, and
            # /nonexistent, where specs that are never meant to run point.
            "allowed_paths": [tmp_path, DATA, Path("/nonexistent")],
        }
        values.update(overrides)
        return Config(**values)  # type: ignore[arg-type]

    return make


class RunningService:
    """A real service with its API on a free loopback port, and clients for it."""

    def __init__(self, service, server) -> None:  # type: ignore[no-untyped-def]
        self.service = service
        self.server = server
        self.url = server.url
        self.key = service.api_key

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def client(self):  # type: ignore[no-untyped-def]
        from autoinfer.sdk import SyncAutoInfer

        return SyncAutoInfer(self.url, self.key)

    def cli_env(self) -> dict[str, str]:
        return {**os.environ, "AUTOINFER_URL": self.url, "AUTOINFER_KEY": self.key or ""}


@pytest.fixture
def start_service(make_config: Callable[..., Config]) -> Iterator[Callable[..., RunningService]]:
    from autoinfer.api.server import BackgroundServer
    from autoinfer.service import AutoInferService

    running: list[BackgroundServer] = []

    def start(config: Config | None = None, **overrides: object) -> RunningService:
        config = config or make_config(**overrides)
        service = AutoInferService(config)
        server = BackgroundServer(service)
        server.start()
        running.append(server)
        return RunningService(service, server)

    yield start
    for server in reversed(running):
        server.stop()


@pytest.fixture
def api(start_service: Callable[..., RunningService]) -> RunningService:
    """A service with default settings (no sources, no triggers)."""
    return start_service()


@contextlib.contextmanager
def serving_api_and_events(
    service: AutoInferService, sock: socket.socket | None = None
) -> Iterator[AutoInferService]:
    """`service`'s API on a free loopback port (`service.url` set) and its event pipeline
    running, but no executor: jobs that triggers and handlers create stay `new`. `sock`: a
    socket already bound, for code that must know the URL before the service exists."""
    import uvicorn

    from autoinfer.api.app import create_app

    if sock is None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(service, manage_lifecycle=False), log_level="warning", lifespan="off"
        )
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            pytest.fail("the service did not start serving")
        time.sleep(0.02)
    service.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    service.pipeline.start()
    try:
        yield service
    finally:
        service.pipeline.stop()
        server.should_exit = True
        thread.join(10)
        sock.close()
        service.db.dispose()
