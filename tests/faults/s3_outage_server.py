"""A moto S3 server that can go away and come back with its data: `python s3_outage_server.py`.

moto keeps its buckets in memory, so restarting its process would lose every object. This
process instead serves moto's app with werkzeug and, on command, closes its listening socket
(clients then get "connection refused", as from a stopped server) and later listens again on
the same port, the buckets still there. Commands are lines on stdin, each answered on stdout:

    (at start)      → "ready <port>"
    stop            → "stopped"      the port is closed
    start           → "started"      the same port serves again
    quit / EOF      → the process exits
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import BaseWSGIServer, make_server


class OutageServer:
    """moto's app on 127.0.0.1:`port`, whose listener can be closed and reopened."""

    def __init__(self, port: int = 0) -> None:
        self.app = DomainDispatcherApplication(create_backend_app)
        self.port = port
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()

    def start(self) -> None:
        server = make_server(
            "127.0.0.1", self.port, self.app, threaded=True, request_handler=MotoRequestHandler
        )
        self.port = server.server_address[1]
        # Keep-alive connections would outlive the listener: remember them to cut them too.
        accept, release = server.process_request, server.shutdown_request

        def process_request(request: socket.socket, address: object) -> None:
            with self._lock:
                self._connections.add(request)
            accept(request, address)  # type: ignore[arg-type]

        def shutdown_request(request: socket.socket) -> None:
            with self._lock:
                self._connections.discard(request)
            release(request)  # type: ignore[arg-type]

        server.process_request = process_request  # type: ignore[method-assign]
        server.shutdown_request = shutdown_request  # type: ignore[method-assign]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()  # close the socket: connections are refused from now on
        with self._lock:
            connections, self._connections = list(self._connections), set()
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by the client
                connection.shutdown(socket.SHUT_RDWR)
        assert self._thread is not None
        self._thread.join()
        self._server = None


def main() -> None:
    server = OutageServer(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    server.start()
    print(f"ready {server.port}", flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "stop":
            server.stop()
            print("stopped", flush=True)
        elif command == "start":
            server.start()
            print("started", flush=True)
        elif command == "quit":
            break
        else:
            print(f"unknown command {command!r}", flush=True)
    server.stop()


if __name__ == "__main__":
    main()
