"""The real service as a subprocess, and what fault tests do to it and with it.

`ServiceProcess` runs `python -m autoinfer.cli serve --config FILE` (killed, terminated and
restarted at will, on one port and one data folder); `WebhookSender` delivers S3-format
notifications to it the way S3 does, retrying each delivery until it is acknowledged;
`make_object` writes a small zip holding one generated JPEG and returns its S3-format record.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml
from PIL import Image

from autoinfer.events.model import S3Event, s3_record

REPO = Path(__file__).resolve().parents[2]
API_KEY = "ai_fault-suite-admin-key"
WEBHOOK_TOKEN = "fault-suite-webhook-token"
START_TIMEOUT_S = 90.0
LIVE = ("waiting for resources", "waiting for data/model download", "running", "uploading")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def service_config(
    workdir: Path,
    *,
    port: int,
    cache_dir: Path,
    triggers: list[dict[str, Any]],
    stores: dict[str, dict[str, Any]] | None = None,
    sources: list[dict[str, Any]] | None = None,
    executor: dict[str, Any] | None = None,
    limits: dict[str, Any] | None = None,
    sandbox: str | None = None,
) -> dict[str, Any]:
    """An autoinfer.yaml for a service in `workdir`: a local store `buckets/`, a webhook source
    with WEBHOOK_TOKEN, the bootstrap key API_KEY and the given triggers; jobs may name local
    paths anywhere in `workdir` (but its data folder)."""
    return {
        "data_dir": str(workdir / "service"),
        "cache_dir": str(cache_dir),
        "api": {"host": "127.0.0.1", "port": port},
        "api_key": API_KEY,
        "stores": stores or {"local": {"type": "local", "root": str(workdir / "buckets")}},
        "sources": sources or [{"type": "webhook", "store": "local", "token": WEBHOOK_TOKEN}],
        "triggers": triggers,
        "executor": {"type": "local", "max_jobs": 4, "lease_s": 3, **(executor or {})},
        **({"limits": limits} if limits else {}),
        "allowed_paths": [str(workdir)],
        **({"sandbox": sandbox} if sandbox else {}),
    }


def classify_trigger(
    name: str = "classify",
    *,
    bucket: str = "data",
    prefix: str = "incoming/",
    suffix: str = ".zip",
    output_uri: str = "{bucket_uri}/processed",
    max_attempts: int = 3,
    **job: Any,
) -> dict[str, Any]:
    """A rule running the built-in classifier on each matching object."""
    return {
        "name": name,
        "bucket": bucket,
        "prefix": prefix,
        "suffix": suffix,
        "max_attempts": max_attempts,
        "job": {
            "name": "{key_stem}",
            "model": {"source_type": "builtin", "source_uri": "efficientnet_lite0"},
            "data": {"input_uri": "{uri}", "output_uri": output_uri},
            **job,
        },
    }


class ServiceProcess:
    """`autoinfer serve` in a subprocess; every start uses the same config, port and data."""

    def __init__(
        self, config: dict[str, Any], workdir: Path, *, env: dict[str, str] | None = None
    ) -> None:
        self.workdir = workdir
        self.config_path = workdir / "autoinfer.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.url = f"http://127.0.0.1:{config['api']['port']}"
        self.log_path = workdir / "service.log"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOINFER_")}
        self.env.update(env or {})
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.http = httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30
        )

    # --- the process --------------------------------------------------------------------

    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        """Start the service and wait until its API answers."""
        assert self.process is None or self.process.poll() is not None, "already running"
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"\n===== start {self.starts} =====\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "autoinfer.cli",
                    "serve",
                    "--config",
                    str(self.config_path),
                    "--log-level",
                    "warning",
                ],
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the service exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"the service did not answer within {timeout} s:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, whatever was in flight is left as it was."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)

    def terminate(self, timeout: float = 120.0) -> int:
        """SIGTERM, then wait for the process to end; returns its exit status."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def close(self) -> None:
        self.kill()
        self.http.close()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # --- the API ------------------------------------------------------------------------

    def get(self, path: str, **params: Any) -> Any:
        response = self.http.get(path, params=params)
        response.raise_for_status()
        return response.json()

    def post(self, path: str, body: Any = None) -> Any:
        response = self.http.post(path, json=body)
        response.raise_for_status()
        return response.json()

    def jobs(self, **filters: Any) -> list[dict[str, Any]]:
        """Every job (all pages), with its transitions."""
        jobs: list[dict[str, Any]] = []
        while True:
            page = self.get("/v1/jobs", limit=1000, offset=len(jobs), **filters)
            jobs.extend(page["jobs"])
            if len(jobs) >= page["total"] or not page["jobs"]:
                return jobs

    def count_jobs(self, status: str | None = None) -> int:
        params = {"status": status} if status else {}
        return int(self.get("/v1/jobs", limit=1, **params)["total"])

    def events(self, **filters: Any) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        while True:
            page = self.get("/v1/events", limit=1000, offset=len(events), **filters)
            events.extend(page["events"])
            if len(events) >= page["total"] or not page["events"]:
                return events

    def count_events(self, outcome: str | None = None) -> int:
        params = {"outcome": outcome} if outcome else {}
        return int(self.get("/v1/events", limit=1, **params)["total"])

    def wait_for(
        self, condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.2
    ) -> None:
        """Poll `condition()` until true; AssertionError naming `what` after `timeout` s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{self.log_tail()}")

    def wait_idle(self, expected_jobs: int, timeout: float) -> None:
        """Wait until `expected_jobs` jobs exist and none is queued or running."""

        def idle() -> bool:
            counts = {s: self.count_jobs(s) for s in ("new", *LIVE)}
            return self.count_jobs() >= expected_jobs and not any(counts.values())

        self.wait_for(idle, timeout, f"{expected_jobs} jobs to settle")

    # --- webhook deliveries ---------------------------------------------------------------

    def post_event(self, body: bytes | str, *, token: str = WEBHOOK_TOKEN) -> httpx.Response:
        """One webhook request, answered or not (no retry)."""
        content = body.encode() if isinstance(body, str) else body
        return httpx.post(
            self.url + "/v1/events/s3",
            content=content,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            timeout=60,
        )


@dataclass
class WebhookSender:
    """Delivers notifications like S3 does: each until it is acknowledged with a 2xx.

    Deliveries that get no answer (the service was killed mid-request, or is down) are
    retried; `cut` counts those attempts. `acked` holds the event ids each 2xx answer named.
    """

    service: ServiceProcess
    threads: int = 4
    acked: list[int] = field(default_factory=list)
    cut: int = 0
    delivered: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _deliver(self, client: httpx.Client, body: bytes) -> None:
        headers = {"Authorization": f"Bearer {WEBHOOK_TOKEN}", "Content-Type": "application/json"}
        while True:
            try:
                response = client.post(
                    self.service.url + "/v1/events/s3", content=body, headers=headers
                )
            except httpx.TransportError:
                response = None
            if response is not None and response.status_code < 300:
                ids = [event["id"] for event in response.json()["events"]]
                with self._lock:
                    self.acked.extend(ids)
                    self.delivered += 1
                return
            if response is not None and response.status_code < 500:
                raise AssertionError(f"delivery refused: {response.status_code} {response.text}")
            with self._lock:
                self.cut += 1
            time.sleep(0.1)

    def deliver_all(self, bodies: Iterable[bytes]) -> threading.Thread:
        """Deliver every body from `threads` threads, in the background; join the result."""
        queue = list(bodies)
        queue.reverse()
        lock = threading.Lock()

        def work() -> None:
            with httpx.Client(timeout=30) as client:
                while True:
                    with lock:
                        if not queue:
                            return
                        body = queue.pop()
                    self._deliver(client, body)

        workers = [threading.Thread(target=work, daemon=True) for _ in range(self.threads)]
        for worker in workers:
            worker.start()

        def join_all() -> None:
            for worker in workers:
                worker.join()

        joiner = threading.Thread(target=join_all, daemon=True)
        joiner.start()
        return joiner


# --- objects --------------------------------------------------------------------------------


def jpeg_bytes(index: int, size: int = 32) -> bytes:
    """A small JPEG that differs for every index."""
    rng = random.Random(index)
    image = Image.new("RGB", (size, size), tuple(rng.randrange(256) for _ in range(3)))
    for _ in range(4):
        x, y = rng.randrange(size), rng.randrange(size)
        image.paste(
            tuple(rng.randrange(256) for _ in range(3)), (x, y, min(size, x + 8), min(size, y + 8))
        )
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=80)
    return buffer.getvalue()


def make_object(store_root: Path, bucket: str, key: str, index: int) -> dict[str, Any]:
    """Write `<store_root>/<bucket>/<key>`, a zip of one JPEG `img-<index>.jpg`; return the
    S3-format record announcing it (ETag = MD5 of the content, as S3's)."""
    path = store_root / bucket / key
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        info = zipfile.ZipInfo(f"img-{index}.jpg", date_time=(2026, 1, 1, 0, 0, 0))
        archive.writestr(info, jpeg_bytes(index))
    data = buffer.getvalue()
    path.write_bytes(data)
    return record_for(bucket, key, data)


def record_for(
    bucket: str, key: str, data: bytes, event_name: str = "ObjectCreated:Put"
) -> dict[str, Any]:
    event = S3Event(
        bucket=bucket,
        key=key,
        event_name=event_name,
        event_time=datetime.now(UTC),
        size=len(data),
        etag=hashlib.md5(data, usedforsecurity=False).hexdigest(),
    )
    return s3_record(event)


def notification(*records: dict[str, Any]) -> bytes:
    return json.dumps({"Records": list(records)}).encode()


def files_below(folder: Path) -> list[Path]:
    """Every file or link below `folder` (links included, not followed)."""
    return sorted(p for p in folder.rglob("*") if p.is_file() or p.is_symlink())
