"""`autoinfer doctor [--config FILE]`: check a configuration against the world it names.

It loads and validates the configuration, connects to the database, reaches every store and
queue with the configured credentials, and reads each watched bucket's notification settings
to see that the events the triggers wait for are sent where a source receives them. Each
problem is one line saying what is wrong and what to do; the exit code is 1 if there is any.
Nothing is changed: an empty database stays empty, no master key or API key file is written.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import typer

from autoinfer.cli.client import console, one_line_errors
from autoinfer.cli.text import safe_text
from autoinfer.config import Config, load_config
from autoinfer.errors import AutoInferError, ConfigError
from autoinfer.findings import Finding, ok, problem
from autoinfer.storage.checks import backend_checks

__all__ = ["Doctor", "Finding", "doctor"]


class Doctor:
    """Runs the checks in order; `run()` yields findings as they are made."""

    def __init__(self, config: Config, config_file: Path | None) -> None:
        self.config = config
        self.config_file = config_file
        self.resolve: Callable[[str], str] = _env_secret

    def run(self) -> Iterator[Finding]:
        yield from self.check_database()
        yield from self.check_data_dir()
        yield from self.check_sandbox()
        yield from self.check_gpu()
        if not (yield from self.check_config()):
            return
        checks = backend_checks(self.config, self.resolve)
        for check in checks:
            yield from check.check_stores()
        for check in checks:
            yield from check.check_sources()
        for check in checks:
            yield from check.check_delivery()

    # --- the database and the secrets it holds -------------------------------------------

    def check_database(self) -> Iterator[Finding]:
        from sqlalchemy import create_engine, inspect, make_url, text

        from autoinfer.db import default_url

        url = self.config.database_url or default_url(self.config.data_path)
        shown = make_url(url).render_as_string(hide_password=True)
        if url.startswith("sqlite") and not self.config.database_url:
            path = self.config.data_path / "autoinfer.db"
            if not path.exists():
                yield ok(f"database {shown}: created on the first `autoinfer serve`")
                return
        try:
            engine = create_engine(url)
        except Exception as error:  # noqa: BLE001 - a missing driver, a malformed URL
            yield problem(f"database {shown}: {_first_line(error)} — fix `database_url`")
            return
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
                has_secrets = inspect(connection).has_table("secrets")
        except Exception as error:  # noqa: BLE001 - whatever the driver raises, said in one line
            yield problem(
                f"database {shown}: cannot connect ({_first_line(error)}) — is the server running, "
                "and are `database_url`'s host, port, user and password right?"
            )
            return
        finally:
            engine.dispose()
        yield ok(f"database {shown}: reachable")
        if has_secrets:
            self.resolve = self._stored_secrets(url) or _env_secret

    def _stored_secrets(self, url: str) -> Callable[[str], str] | None:
        """Resolve `secret:NAME` from the service's secret store (its tables exist: opening
        the database creates none), when its master key is here."""
        from autoinfer.db import Database
        from autoinfer.secrets import MASTER_KEY_ENV, MASTER_KEY_FILE, Secrets, load_master_key

        key_file = self.config.data_path / MASTER_KEY_FILE
        if not os.environ.get(MASTER_KEY_ENV) and not key_file.exists():
            return None  # load_master_key would create one: leave that to `serve`
        secrets = Secrets(Database(url, upgrade=False), load_master_key(self.config.data_path))

        def resolve(value: str) -> str:
            if not value.startswith("secret:"):
                return value
            return secrets.resolve(value.removeprefix("secret:"))

        return resolve

    def check_data_dir(self) -> Iterator[Finding]:
        """The disk holding `data_dir` has room (the database, galleries and scratch grow
        there); its size is not measured here (that walks every file: see `status`)."""
        from autoinfer.disk_usage import disk_space

        data_dir = self.config.data_path
        space = disk_space(data_dir)
        if space.nearly_full:
            yield problem(
                f"data_dir {data_dir}: its disk is nearly full ({space.describe()}) — free "
                "space, or shorten `retention:` so old jobs, events and thumbnails go sooner"
            )
        else:
            yield ok(f"data_dir {data_dir}: disk has {space.describe()}")

    def check_sandbox(self) -> Iterator[Finding]:
        """Worker commands can run as configured: bwrap starts a sandbox (a real `true` run
        the way jobs run), or the configuration opted out with `sandbox: none`."""
        from autoinfer.sandbox import make_sandbox

        sandbox = make_sandbox(self.config.sandbox)
        if sandbox.kind == "none":
            yield ok(f"warning: {sandbox.describe()}")
            return
        failure = sandbox.self_test()
        if failure is not None:
            yield problem(f"sandbox: {failure}")
        else:
            yield ok(f"{sandbox.describe()}: a test command ran")

    def check_gpu(self) -> Iterator[Finding]:
        """Whether built-in models can run on a GPU here (jobs with `gpu_count` ≥ 1, and every
        job with `predictors.device: cuda`). Only `device: cuda` without one is a problem."""
        from autoinfer.executors.gpus import detect_inventory
        from autoinfer.predictors.devices import cuda_problem

        settings = self.config.predictors
        reason = cuda_problem()
        if reason is None:
            yield ok(
                f"built-in models can run on GPU {settings.cuda_device} (ONNX Runtime's CUDA "
                f"execution provider), for jobs with gpu_count ≥ 1"
                + (" and every job (predictors.device: cuda)" if settings.device == "cuda" else "")
            )
            return
        if settings.device == "cuda":
            yield problem(
                f"predictors.device is cuda but {reason}: built-in models would run on the CPU — "
                "install onnxruntime-gpu on a machine with a CUDA GPU, or set device: cpu"
            )
            return
        has_gpus = bool(self.config.gpus) if self.config.gpus is not None else None
        if has_gpus is None:
            has_gpus = bool(detect_inventory())
        if has_gpus:
            yield ok(
                f"warning: built-in models cannot use this machine's GPUs ({reason}): "
                "their jobs with gpu_count ≥ 1 fail"
            )
        else:
            yield ok(
                f"built-in models run on the CPU here ({reason}); their jobs with "
                "gpu_count ≥ 1 too, with a line in the job's log"
            )

    # --- the configuration as a whole ----------------------------------------------------

    def check_config(self) -> Generator[Finding, None, bool]:
        """Triggers, sources and stores fit together (what `serve` checks when it starts)."""
        from autoinfer.db import Database
        from autoinfer.jobs.service import JobService
        from autoinfer.pipeline import EventPipeline
        from autoinfer.storage import open_registry

        where = str(self.config_file) if self.config_file else "the configuration"
        scratch = Database("sqlite://")  # in memory: the pipeline's checks need no real one
        try:
            storage = open_registry(self.config, self.resolve)
            EventPipeline(
                self.config, scratch, JobService(scratch), storage, resolve_secret=self.resolve
            )
        except AutoInferError as error:
            yield problem(f"{where}: {error}")
            return False
        finally:
            scratch.dispose()
        config = self.config
        yield ok(
            f"{where}: {len(config.stores)} store(s), {len(config.sources)} source(s), "
            f"{len(config.triggers)} trigger(s)"
        )
        return True


def _env_secret(value: str) -> str:
    """`secret:NAME` from AUTOINFER_SECRET_<NAME> only (no secret store at hand)."""
    from autoinfer.secrets import env_name

    if not value.startswith("secret:"):
        return value
    name = value.removeprefix("secret:")
    found = os.environ.get(env_name(name))
    if found is None:
        raise ConfigError(
            f"secret {name!r} cannot be read here (no master key beside the database): "
            f"set {env_name(name)}, or run doctor where the service's data folder is"
        )
    return found


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


# --- the command --------------------------------------------------------------------------------


@one_line_errors
def doctor(
    config_file: Path = typer.Option(
        None, "--config", "-c", help="autoinfer.yaml (default: ./autoinfer.yaml if present)."
    ),
) -> None:
    """Check the configuration and everything it names; one line per problem.

    Loads the configuration, connects to the database, reaches every store and queue with
    their credentials, and reads each watched bucket's notification settings. Each problem is
    one line saying what to do; the exit code is 1 if there is any.
    """
    if config_file is None and Path("autoinfer.yaml").is_file():
        config_file = Path("autoinfer.yaml")
    try:
        config = load_config(config_file)
    except ConfigError as error:
        console.print(f"[red]✗[/red] {safe_text(error)}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    problems = 0
    for finding in Doctor(config, config_file).run():
        if finding.ok:
            console.print(
                f"[green]✓[/green] {safe_text(finding.message)}", highlight=False, soft_wrap=True
            )
        else:
            problems += 1
            console.print(
                f"[red]✗[/red] {safe_text(finding.message)}", highlight=False, soft_wrap=True
            )
    if problems:
        console.print(f"{problems} problem(s) found", highlight=False)
        raise typer.Exit(1)
    console.print("no problems found", highlight=False)
