"""`autoinfer serve`: sources, triggers, executor, API and dashboard in one process."""

from __future__ import annotations

import logging
from pathlib import Path

import typer
from rich.console import Console

from autoinfer.cli.client import one_line_errors
from autoinfer.config import load_config

stderr = Console(stderr=True)


@one_line_errors
def serve(
    config_file: Path = typer.Option(None, "--config", "-c", help="autoinfer.yaml (default: ./autoinfer.yaml if present)."),
    host: str = typer.Option(None, "--host", help="Listen address [default: 127.0.0.1]."),
    port: int = typer.Option(None, "--port", help="Listen port [default: 8000]."),
    data_dir: Path = typer.Option(None, "--data-dir", help="Database, logs, scratch and model cache."),
    insecure: bool = typer.Option(False, "--insecure", help="Accept requests without an API key (local use only)."),
    log_level: str = typer.Option("info", "--log-level", help="debug, info, warning, error."),
) -> None:
    """Run the service. Without a config file it serves the API alone."""
    from autoinfer.api.server import make_server
    from autoinfer.service import AutoInferService

    if config_file is None and Path("autoinfer.yaml").is_file():
        config_file = Path("autoinfer.yaml")
    config = load_config(config_file)
    updates = {key: value for key, value in (("host", host), ("port", port)) if value is not None}
    if updates:
        config.api = config.api.model_copy(update=updates)
    if data_dir is not None:
        config.data_dir = data_dir.resolve()
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    service = AutoInferService(config, insecure=insecure or config.insecure)
    if service.insecure:
        stderr.print("[yellow]--insecure: the API accepts requests without a key. Local use only.[/yellow]")
    else:
        stderr.print(f"API key: in {service.api_key_file} (or AUTOINFER_API_KEY); send 'Authorization: Bearer <key>'", highlight=False)
    stderr.print(f"autoinfer on http://{config.api.host}:{config.api.port}  (data in {service.data_dir})", highlight=False)
    server = make_server(service, config.api.host, config.api.port, log_level=log_level)
    server.run()
