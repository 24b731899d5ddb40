"""`autoinfer serve` as a real process on a free loopback port: start, wait until it answers,
deliver S3 notifications to its webhook, stop or SIGKILL it, read its log."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.s3_server import free_port

#: The webhook source's token the served configs use.
WEBHOOK_TOKEN = "replica-webhook-token"
# The deadline only keeps a broken build from hanging the suite; nothing asserts on time.
START_TIMEOUT_S = 60


class Replica:
    """One `python -m autoinfer.cli serve` process on a free loopback port."""

    def __init__(
        self,
        name: str,
        config: Path,
        root: Path,
        env: dict[str, str],
        extra_args: list[str] | None = None,
    ) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = root / f"{name}.log"
        command = [
            sys.executable,
            "-m",
            "autoinfer.cli",
            "serve",
            "--config",
            str(config),
            "--port",
            str(self.port),
            "--data-dir",
            str(root / name),
            *(extra_args or []),
        ]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"replica {self.name} exited:\n{self.log_tail()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        pytest.fail(f"replica {self.name} did not answer /healthz:\n{self.log_tail()}")

    def deliver(self, notification: dict[str, Any]) -> int | None:
        """POST a notification; its status code, None if the replica is gone."""
        try:
            response = httpx.post(
                self.url + "/v1/events/s3",
                json=notification,
                headers={"Authorization": f"Bearer {WEBHOOK_TOKEN}"},
                timeout=30,
            )
        except httpx.TransportError:
            return None
        return response.status_code

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])
