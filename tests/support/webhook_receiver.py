"""A real webhook receiver on loopback that verifies Standard Webhooks signatures with the
`standardwebhooks` library (not autoinfer's code) and records what it accepted.

It can be down (nothing listens on its port: connections are refused) and brought up later
on the same port, as a real endpoint coming back after an outage.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError


@dataclass(frozen=True)
class Delivery:
    webhook_id: str
    timestamp: str
    body: dict[str, Any]


class WebhookReceiver:
    """`start()` listens, `stop()` goes away; `deliveries` holds each verified request,
    `rejected` counts requests whose signature did not verify (answered 401)."""

    def __init__(self, secret: str, port: int | None = None) -> None:
        self.verifier = Webhook(secret)
        self.port = port or _free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.deliveries: list[Delivery] = []
        self.rejected = 0
        self.status_code = 204  # what a verified delivery is answered with
        self._server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                headers = {name.lower(): value for name, value in self.headers.items()}
                try:
                    body = receiver.verifier.verify(raw, headers)
                except WebhookVerificationError:
                    with receiver._lock:
                        receiver.rejected += 1
                    self.send_response(401)
                    self.end_headers()
                    return
                with receiver._lock:
                    receiver.deliveries.append(
                        Delivery(headers["webhook-id"], headers["webhook-timestamp"], body)
                    )
                self.send_response(receiver.status_code)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def wait_for(self, count: int, timeout: float = 60.0) -> list[Delivery]:
        """Poll until at least `count` verified deliveries arrived; AssertionError after
        `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.deliveries) >= count:
                    return list(self.deliveries)
            time.sleep(0.05)
        raise AssertionError(
            f"{len(self.deliveries)} of {count} webhook deliveries arrived within {timeout} s"
        )

    def webhook_ids(self) -> set[str]:
        with self._lock:
            return {delivery.webhook_id for delivery in self.deliveries}


def new_secret() -> str:
    import base64
    import secrets

    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
