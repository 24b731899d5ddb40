"""Running the app under uvicorn: in the foreground (`autoinfer serve`) or in a thread (demo, tests)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import TYPE_CHECKING, Self, TypedDict

import uvicorn

from autoinfer.api.app import create_app
from autoinfer.api.connections import protocol_with
from autoinfer.api.limits import LimitsConfig

if TYPE_CHECKING:
    from autoinfer.service import AutoInferService


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


#: On shutdown, how long open requests (log streams follow a job until it ends) may go on
#: before they are cut; only then does the service stop and give running jobs their grace.
REQUESTS_GRACE_S = 5


def make_server(
    service: AutoInferService, host: str, port: int, *, log_level: str = "info"
) -> uvicorn.Server:
    app = create_app(service)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=REQUESTS_GRACE_S,
        **connection_limits(service),
    )
    service.url = f"http://{host}:{port}"
    return uvicorn.Server(config)


class ConnectionLimits(TypedDict):
    """The keyword arguments of `uvicorn.Config` that `connection_limits` sets."""

    http: type[asyncio.Protocol]
    timeout_keep_alive: int
    h11_max_incomplete_event_size: int


def connection_limits(service: AutoInferService) -> ConnectionLimits:
    """uvicorn's share of the `limits:` settings: header time and size, idle keep-alive."""
    limits = getattr(getattr(service, "config", None), "limits", None) or LimitsConfig()
    return {
        "http": protocol_with(limits.header_timeout_s),  # h11, plus a header timeout
        "timeout_keep_alive": limits.keep_alive_s,
        "h11_max_incomplete_event_size": limits.max_header_bytes,
    }


class BackgroundServer:
    """The service and its API in a daemon thread of this process, on a free loopback port."""

    def __init__(
        self,
        service: AutoInferService,
        host: str = "127.0.0.1",
        port: int | None = None,
        *,
        log_level: str = "warning",
    ) -> None:
        self.service = service
        self.port = port or free_port(host)
        self.url = f"http://{host}:{self.port}"
        self.server = make_server(service, host, self.port, log_level=log_level)
        self._thread = threading.Thread(target=self.server.run, name="autoinfer-api", daemon=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 60.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the autoinfer API server failed to start; see the log above")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the autoinfer API server did not start within {timeout} s")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(60)
