"""Followed log streams against a real `serve`: capped per key and in all, and cheap while
they wait."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable, Iterator

import pytest

from tests.support.raw_http import cpu_seconds, open_request, read_status
from tests.support.service_harness import API_KEY, ServiceProcess


def running_job(service: ServiceProcess) -> str:
    """A job that runs (sleeps) for the rest of the test."""
    root = service.workdir / "buckets" / "data"
    (root / "model").mkdir(parents=True, exist_ok=True)
    (root / "model" / "README").write_text("a model folder\n")
    (root / "in.txt").write_text("input\n")
    job = service.post(
        "/v1/jobs",
        {
            "name": "sleeper",
            "workers": ["sleep 600"],
            "model": {"source_type": "local", "source_uri": str(root / "model")},
            "data": {"input_uri": str(root / "in.txt"), "output_uri": str(root / "out")},
        },
    )
    service.wait_for(
        lambda: service.get(f"/v1/jobs/{job['id']}")["status"] == "running", 60, "the job to run"
    )
    return str(job["id"])


@contextlib.contextmanager
def streams() -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    try:
        yield opened
    finally:
        for sock in opened:
            sock.close()


def follow(
    service: ServiceProcess, job_id: str, key: str, opened: list[socket.socket]
) -> tuple[int, bytes]:
    sock = open_request(
        service.url,
        "GET",
        f"/v1/jobs/{job_id}/logs?follow=true",
        {"Authorization": f"Bearer {key}"},
    )
    opened.append(sock)
    return read_status(sock)


@pytest.mark.slow
def test_follow_streams_are_capped_per_key_and_in_all(serve: Callable[..., ServiceProcess]) -> None:
    service = serve(triggers=[], limits={"follow_streams_per_key": 2, "follow_streams_total": 3})
    job_id = running_job(service)
    reader = service.post("/v1/keys", {"name": "reader", "role": "read"})["key"]
    with streams() as opened:
        assert follow(service, job_id, API_KEY, opened)[0] == 200
        assert follow(service, job_id, API_KEY, opened)[0] == 200
        status, head = follow(service, job_id, API_KEY, opened)
        assert status == 429
        assert b"2 log streams already open with this key (limit 2" in head + opened[-1].recv(4096)

        assert follow(service, job_id, reader, opened)[0] == 200
        status, head = follow(service, job_id, reader, opened)
        assert status == 429
        assert b"3 log streams already open on this service (limit 3" in head + opened[-1].recv(
            4096
        )

        opened.pop(0).close()  # a stream that ends gives its slot back

        def slot_free() -> bool:
            return follow(service, job_id, API_KEY, opened)[0] == 200

        service.wait_for(slot_free, 30, "the closed stream's slot")


@pytest.mark.slow
def test_idle_follow_streams_cost_the_service_little_cpu(
    serve: Callable[..., ServiceProcess],
) -> None:
    many = 120
    service = serve(
        triggers=[], limits={"follow_streams_per_key": many, "follow_streams_total": many}
    )
    job_id = running_job(service)
    assert service.process is not None
    pid = service.process.pid
    with streams() as opened:
        for _ in range(many):
            assert follow(service, job_id, API_KEY, opened)[0] == 200
        time.sleep(1)
        start_cpu, start = cpu_seconds(pid), time.monotonic()
        time.sleep(4)
        used = (cpu_seconds(pid) - start_cpu) / (time.monotonic() - start)
    # Each stream polling on its own cost ~a core at 200 streams; one shared watcher, ~nothing.
    assert used < 0.25, f"{many} idle streams kept serve {used:.0%} busy"
