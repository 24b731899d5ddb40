"""Stage in and stage out: a job's input and model fetched into its scratch folder (archives
extracted within the job's disk_size, git models cloned), its output uploaded, retried through
a transient store outage until the job's timeout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from autoinfer.errors import InputRejected, JobFailed, StorageError
from autoinfer.jobs.spec import safe_file_name
from autoinfer.retrying import retry_transient
from autoinfer.runner.context import GIB
from autoinfer.storage import join_uri
from autoinfer.storage.archives import archive_kind, extract, make_zip
from autoinfer.storage.budget import ByteBudget
from autoinfer.storage.in_place import extract_in_place
from autoinfer.text import one_line

if TYPE_CHECKING:
    from autoinfer.runner.life import Runner

T = TypeVar("T")


def stage_in(runner: Runner) -> None:
    if runner.ctx.paths is not None:  # checked at creation; again now, symlinks may have moved
        runner.ctx.paths.check_spec(runner.spec)
    uri = runner.spec.data.input_uri
    runner.log.system(f"downloading input {uri}")
    fetch(runner, uri, runner.data_dir, what="input")
    runner.log.system(f"input ready: {count_files(runner.data_dir)} file(s)")
    fetch_model(runner)


def fetch(runner: Runner, uri: str, dest: Path, *, what: str) -> None:
    """Download `uri` into `dest`, extracting it when it is an archive."""
    budget = runner.spec.resources.disk_size * GIB
    storage = runner.ctx.storage.for_uri(uri)
    # Sizes checked before copying, bytes counted while copying (InputRejected past it).
    limit = f"the job's disk_size of {runner.spec.resources.disk_size} GiB"
    counted = ByteBudget(budget, label=what, limit_text=limit)
    if extract_in_place(storage, uri, dest, runner.ctx.archive_limits, counted):
        return  # a local archive: extracted from where it lies, no copy into scratch
    download_dir = runner.workdir / f"download-{what}"
    download_dir.mkdir()
    fetched = storage.download(uri, download_dir, counted)
    used = tree_size(download_dir)
    if used > budget:
        raise InputRejected(
            f"{what} {uri} is {used / GIB:.2f} GiB, more than the job's disk_size of "
            f"{runner.spec.resources.disk_size} GiB"
        )
    if fetched.is_file() and archive_kind(fetched):
        extract(fetched, dest, runner.ctx.archive_limits, budget_bytes=budget - used)
        fetched.unlink()
    elif fetched.is_file():
        shutil.move(fetched, dest / fetched.name)
    else:
        for child in fetched.iterdir():
            shutil.move(child, dest / child.name)
    shutil.rmtree(download_dir, ignore_errors=True)


def fetch_model(runner: Runner) -> None:
    model = runner.spec.model
    if model.source_type == "builtin":
        runner.log.system(f"model: built-in {model.source_uri}")
        return
    runner.log.system(f"fetching model ({model.source_type}) {model.source_uri}")
    if model.source_type == "local":
        source = Path(model.source_uri.removeprefix("file://")).expanduser()
        if not source.is_dir():
            raise JobFailed(f"model {model.source_uri}: no such folder")
        shutil.rmtree(runner.model_dir)
        shutil.copytree(
            source, runner.model_dir, symlinks=True, ignore=shutil.ignore_patterns(".git")
        )
    elif model.source_type == "git":
        git_clone(runner, model.source_uri)
    else:
        fetch(runner, model.source_uri, runner.model_dir, what="model")


def git_clone(runner: Runner, url: str) -> None:
    shutil.rmtree(runner.model_dir)
    command = ["git", "clone", "--depth", "1", "--quiet", url, str(runner.model_dir)]
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    try:
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            env=env,
            timeout=runner._remaining(),
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise JobFailed(f"model {url}: git clone did not finish before the job's timeout") from None
    if result.returncode != 0:
        detail = one_line(result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "")
        raise JobFailed(
            f"model {url}: git clone failed: {detail or f'exit code {result.returncode}'}"
        )


def stage_out(runner: Runner) -> str:
    """Upload the output; retried through a transient store outage until the job's timeout
    (output names are deterministic and the zip byte-identical, so a repeat overwrites)."""
    data = runner.spec.data
    if runner.ctx.paths is not None:  # the output folder may have become a symlink meanwhile
        runner.ctx.paths.check_spec(runner.spec)
    storage = runner.ctx.storage.for_uri(data.output_uri)
    if not storage.writable:
        raise StorageError(f"{data.output_uri}: this storage cannot be written to")
    name = safe_file_name(runner.spec.name)

    def on_retry(error: StorageError, wait_s: float, retry: int) -> None:
        runner.log.system(f"upload failed ({error}); retry {retry} in {wait_s:.1f} s")

    def retrying(call: Callable[[], T]) -> T:
        return retry_transient(
            call, deadline=runner.deadline, cancelled=runner.cancellation.event, on_retry=on_retry
        )

    if data.output_options.archive:
        target = join_uri(data.output_uri, f"{name}.zip")
        size = storage.write_zip(runner.output_dir, target)  # a local store: in place
        if size is not None:
            runner.log.system(f"wrote {name}.zip ({size} bytes) to {target}", soon=True)
            return target
        archive = make_zip(runner.output_dir, runner.workdir / f"{name}.zip")
        runner.log.system(f"uploading {archive.name} ({archive.stat().st_size} bytes) to {target}")
        retrying(lambda: storage.upload(archive, target))
        return target
    target = join_uri(data.output_uri, name)
    uploaded = retrying(lambda: storage.upload_tree(runner.output_dir, target))
    runner.log.system(f"uploaded {len(uploaded)} file(s) to {target}/")
    return target + "/"


def tree_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def count_files(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file())
