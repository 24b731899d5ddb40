"""The environment cache on a real file system with real flocks and a real uv: idle
environments are swept but never one in use, a killed build never looks ready, a waiting job
can be stopped."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from autoinfer.environments import EnvironmentManager, EnvironmentsConfig
from autoinfer.environments.cache import EnvironmentCache
from autoinfer.errors import JobStopped
from autoinfer.jobs.spec import Environment

DAY = 86400.0


class Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, stream: str, line: str) -> None:
        self.lines.append(line)

    def system(self, message: str) -> None:
        self.lines.append(message)


@pytest.fixture
def manager(tmp_path: Path) -> EnvironmentManager:
    return EnvironmentManager(tmp_path / "environments", EnvironmentsConfig(idle_days=7))


def test_an_idle_environment_is_swept_but_never_while_a_job_uses_it(
    manager: EnvironmentManager, tmp_path: Path
) -> None:
    model = tmp_path / "model"
    model.mkdir()
    environment = manager.prepare(model, Environment(), Log())  # no requirements: pip only
    assert (environment.bin_dir / "python").exists() and (environment.bin_dir / "pip").exists()
    later = time.time() + 8 * DAY
    assert manager.sweep(now=later) == []  # in use
    manager.release(environment)
    assert manager.sweep(now=time.time() + 1 * DAY) == []  # not idle long enough
    assert manager.sweep(now=later) == [environment.hash]
    assert not environment.root.exists()
    again = manager.prepare(model, Environment(), Log())  # rebuilt on the next use
    assert again.hash == environment.hash and not again.reused and again.root.exists()
    manager.release(again)


def test_a_killed_build_leaves_nothing_that_looks_ready(tmp_path: Path) -> None:
    root = tmp_path / "environments"
    key = "ab" * 32
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from autoinfer.environments.cache import EnvironmentCache
        cache = EnvironmentCache(Path({str(root)!r}))
        held = cache.lock({key!r}, shared=False)
        folder = cache.new_build_folder({key!r})
        (folder / "bin").mkdir(parents=True)
        (folder / "pyvenv.cfg").write_text("half")
        print("building", flush=True)
        time.sleep(60)
        """
    )
    builder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert builder.stdout is not None and builder.stdout.readline().strip() == "building"
        cache = EnvironmentCache(root)
        assert cache.try_lock(key) is None  # the build holds it
        cache.sweep(idle_s=0)
        assert len(list(root.glob(".build-*"))) == 1  # a build in progress is left alone
    finally:
        builder.kill()
        builder.wait()
    assert not cache.is_ready(key)
    held = cache.lock(key, shared=False)  # the kernel released the dead builder's lock
    held.release()
    cache.sweep(idle_s=0)
    assert list(root.glob(".build-*")) == []
    assert list((root / ".locks").iterdir()) == []  # nor a lock file of an environment never made


def test_a_job_waiting_for_a_build_can_be_stopped(tmp_path: Path) -> None:
    cache = EnvironmentCache(tmp_path / "environments")
    key = "cd" * 32
    building = cache.lock(key, shared=False)
    cancelled = threading.Event()
    threading.Timer(0.3, cancelled.set).start()
    try:
        with pytest.raises(JobStopped):
            cache.lock(key, shared=True, cancelled=cancelled)
    finally:
        building.release()


def test_without_uv_the_environment_is_made_with_venv_and_pip(tmp_path: Path) -> None:
    manager = EnvironmentManager(tmp_path / "environments", EnvironmentsConfig(installer="pip"))
    model = tmp_path / "model"
    model.mkdir()
    (model / "requirements.txt").write_text("tomli-w==1.0.0\n")
    log = Log()
    environment = manager.prepare(model, Environment(), log)
    assert any(": built in " in line for line in log.lines) and environment.hash in str(
        environment.root
    )
    imported = subprocess.run(
        [str(environment.python), "-c", "import tomli_w; print(tomli_w.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert imported.stdout.strip() == "1.0.0"
    # Its scripts were pointed at the final folder after the rename.
    pip = subprocess.run(
        [str(environment.bin_dir / "pip"), "--version"], capture_output=True, text=True, check=False
    )
    assert pip.returncode == 0 and str(environment.root) in pip.stdout, pip.stderr
    manager.release(environment)
