"""`autoinfer serve`: sources, triggers, executor, API and dashboard in one process."""

from __future__ import annotations

import logging
from pathlib import Path

import typer
from rich.console import Console

from autoinfer.cli.client import one_line_errors
from autoinfer.cli.text import safe_text
from autoinfer.config import load_config

stderr = Console(stderr=True)


@one_line_errors
def serve(
    config_file: Path = typer.Option(
        None, "--config", "-c", help="autoinfer.yaml (default: ./autoinfer.yaml if present)."
    ),
    host: str = typer.Option(None, "--host", help="Listen address [default: 127.0.0.1]."),
    port: int = typer.Option(None, "--port", help="Listen port [default: 8000]."),
    data_dir: Path = typer.Option(
        None, "--data-dir", help="Database, logs, scratch and model cache."
    ),
    insecure: bool = typer.Option(
        False, "--insecure", help="Accept requests without an API key (local use only)."
    ),
    log_level: str = typer.Option("info", "--log-level", help="debug, info, warning, error."),
    log_format: str = typer.Option(
        "text", "--log-format", help="text, or json (one object per line, with job_id/event_id)."
    ),
) -> None:
    """Run the service. Without a config file it serves the API alone."""
    from autoinfer.api.server import make_server
    from autoinfer.logging_setup import FORMATS, configure_logging, route_uvicorn_logs
    from autoinfer.service import AutoInferService

    if log_format not in FORMATS:
        choices = ", ".join(FORMATS)
        raise typer.BadParameter(f"{log_format!r}: use one of {choices}", param_hint="--log-format")
    if config_file is None and Path("autoinfer.yaml").is_file():
        config_file = Path("autoinfer.yaml")
    config = load_config(config_file)
    updates = {key: value for key, value in (("host", host), ("port", port)) if value is not None}
    if updates:
        config.api = config.api.model_copy(update=updates)
    if data_dir is not None:
        config.data_dir = data_dir.resolve()
    configure_logging(log_level, log_format)
    service = AutoInferService(config, insecure=insecure or config.insecure)
    if service.insecure:
        _notice(
            log_format,
            "--insecure: the API accepts requests without a key. Local use only.",
            "yellow",
        )
    else:
        _notice(
            log_format,
            f"API key: in {service.api_key_file} (or AUTOINFER_API_KEY); send 'Authorization: Bearer <key>'",
        )
    _notice(
        log_format,
        f"autoinfer on http://{config.api.host}:{config.api.port}  (data in {service.data_dir})",
    )
    server = make_server(service, config.api.host, config.api.port, log_level=log_level)
    route_uvicorn_logs()  # uvicorn installed its own handlers just now
    server.run()


def _notice(log_format: str, message: str, style: str | None = None) -> None:
    """A startup notice: a log record in JSON mode (every stderr line is JSON), else rich text."""
    if log_format == "json":
        level = logging.WARNING if style else logging.INFO
        logging.getLogger("autoinfer.serve").log(level, message)
    else:
        stderr.print(safe_text(message), style=style, highlight=False)
