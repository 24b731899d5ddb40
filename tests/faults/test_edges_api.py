"""The API's edges against a real `serve`: every request bounded and authenticated before it
is read, out-of-range numbers refused, reused idempotency keys caught, pages framed safely,
lists lean, the gallery confined."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.raw_http import open_request, read_response, request, rss_bytes
from tests.support.service_harness import (
    API_KEY,
    WEBHOOK_TOKEN,
    ServiceProcess,
    notification,
    record_for,
)

MIB = 1024 * 1024
ADMIN = {"Authorization": f"Bearer {API_KEY}"}
HUGE = [2**63, 2**64, 10**30, -1]


@pytest.fixture
def service(serve: Callable[..., ServiceProcess]) -> ServiceProcess:
    return serve(triggers=[], limits={"body_timeout_s": 2, "header_timeout_s": 2})


def job_spec(service: ServiceProcess, name: str = "edge-job") -> dict[str, Any]:
    """A job whose paths lie in the service's local store."""
    root = service.workdir / "buckets" / "data"
    (root / "model").mkdir(parents=True, exist_ok=True)
    (root / "model" / "run.sh").write_text("true\n")
    (root / "in.txt").write_text("input\n")
    return {
        "name": name,
        "workers": ["true"],
        "model": {"source_type": "local", "source_uri": str(root / "model")},
        "data": {"input_uri": str(root / "in.txt"), "output_uri": str(root / "out")},
    }


def chunks(total: int, size: int = MIB) -> Iterator[bytes]:
    """About `total` bytes of one JSON object (a job spec with a very long name)."""
    yield b'{"name": "'
    block = b"x" * size
    for _ in range(total // size):
        yield block
    yield b'"}'


def post_streamed(
    url: str, method: str, path: str, headers: dict[str, str], total: int
) -> int | None:
    """Send `total` bytes as a chunked body; the status, or None if the server hung up."""
    try:
        with httpx.Client(timeout=120) as client:
            return client.request(
                method, url + path, content=chunks(total), headers=headers
            ).status_code
    except httpx.TransportError:
        return None


# --- bounded before read ------------------------------------------------------------------


@pytest.mark.slow
def test_keyless_and_oversized_bodies_leave_the_service_memory_bounded(
    service: ServiceProcess,
) -> None:
    assert service.process is not None
    pid = service.process.pid
    service.get("/v1/jobs")  # warm: the first request imports what requests need
    before = rss_bytes(pid, "VmHWM")  # the peak so far
    keyless = [
        ("POST", "/v1/jobs"),
        ("POST", "/v1/keys"),
        ("PUT", "/v1/secrets/x"),
        ("POST", "/v1/events/s3"),
        ("POST", "/v1/jobs"),
    ]
    statuses: list[int | None] = []

    def send(method: str, path: str, headers: dict[str, str]) -> None:
        statuses.append(post_streamed(service.url, method, path, headers, 200 * MIB))

    threads = [threading.Thread(target=send, args=(m, p, {})) for m, p in keyless]
    threads += [threading.Thread(target=send, args=("POST", "/v1/jobs", ADMIN))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    grown = rss_bytes(pid, "VmHWM") - before  # the peak while the bodies came
    assert grown < 150 * MIB, f"serve grew by {grown / MIB:.0f} MiB"
    assert set(statuses) <= {401, 413, None}, statuses
    assert httpx.get(service.url + "/v1/jobs", headers=ADMIN).status_code == 200


@pytest.mark.slow
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/jobs"),
        ("POST", "/v1/keys"),
        ("PUT", "/v1/secrets/x"),
        ("POST", "/v1/events/s3"),
    ],
)
def test_a_request_without_credentials_is_refused_before_its_body_is_sent(
    service: ServiceProcess, method: str, path: str
) -> None:
    # Only the headers go out: the answer cannot have waited for the 200 MiB announced.
    response = request(service.url, method, path, {"Content-Length": str(200 * MIB)})
    assert response.status == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert response.closed


@pytest.mark.slow
@pytest.mark.parametrize(
    ("method", "path", "message"),
    [
        ("POST", "/v1/jobs", "request body over 256 KiB (limit for POST /v1/jobs)"),
        ("POST", "/v1/keys", "request body over 64 KiB (limit for POST /v1/keys)"),
        ("PUT", "/v1/secrets/x", "request body over 64 KiB (limit for PUT /v1/secrets/{name})"),
        ("POST", "/v1/events/s3", "request body over 16 MiB (limit for POST /v1/events/s3)"),
    ],
)
def test_a_declared_body_over_its_cap_gets_413_naming_the_cap(
    service: ServiceProcess, method: str, path: str, message: str
) -> None:
    headers = {**ADMIN, "Content-Length": str(200 * MIB)}
    if path == "/v1/events/s3":
        headers["Authorization"] = f"Bearer {WEBHOOK_TOKEN}"
    response = request(service.url, method, path, headers)
    assert (response.status, response.json()) == (
        413,
        {"error": {"code": "too_large", "message": message}},
    )
    assert response.closed


@pytest.mark.slow
def test_a_chunked_body_is_cut_at_its_cap(service: ServiceProcess) -> None:
    size = 300 * 1024
    chunk = f"{size:x}\r\n".encode() + b"x" * size + b"\r\n0\r\n\r\n"
    headers = {**ADMIN, "Transfer-Encoding": "chunked", "Content-Type": "application/json"}
    with open_request(service.url, "POST", "/v1/jobs", headers, chunk) as sock:
        response = read_response(sock)
    assert response.status == 413
    assert response.json()["error"]["message"].startswith("request body over 256 KiB")
    assert service.count_jobs() == 0


@pytest.mark.slow
@pytest.mark.parametrize("token", [API_KEY, WEBHOOK_TOKEN])
def test_a_stalled_body_is_dropped_within_the_timeout(service: ServiceProcess, token: str) -> None:
    path = "/v1/jobs" if token == API_KEY else "/v1/events/s3"
    headers = {"Authorization": f"Bearer {token}", "Content-Length": "1000"}
    with open_request(service.url, "POST", path, headers, b'{"name": ') as sock:
        response = read_response(sock, timeout=60)  # configured: body_timeout_s 2
    assert response.status == 408
    assert response.json()["error"] == {
        "code": "timeout",
        "message": "request body not received within 2 s",
    }
    assert response.closed


@pytest.mark.slow
def test_a_request_head_that_never_ends_is_dropped(service: ServiceProcess) -> None:
    host, port = service.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # and nothing more
        try:
            closed = sock.recv(1) == b""  # configured: header_timeout_s 2
        except ConnectionResetError:
            closed = True
    assert closed


# --- precise refusals -----------------------------------------------------------------------


@pytest.mark.slow
def test_out_of_range_numbers_are_422_and_nothing_is_a_500(service: ServiceProcess) -> None:
    job = service.post("/v1/jobs", job_spec(service))
    for url in (
        "/v1/jobs?offset={n}",
        "/v1/events?offset={n}",
        "/v1/events/{n}",
        f"/v1/jobs/{job['id']}/logs?after={{n}}",
    ):
        for n in HUGE:
            response = service.http.get(url.format(n=n))
            assert response.status_code == 422, (url, n, response.text)
            assert response.json()["error"]["code"] == "invalid_request"
    # Every integer parameter of every GET route the API describes, out of range.
    paths = service.get("/openapi.json")["paths"]
    for path, operations in paths.items():
        operation = operations.get("get")
        if operation is None:
            continue
        concrete = path.replace("{job_id}", job["id"])
        for parameter in operation.get("parameters", []):
            if parameter["schema"].get("type") != "integer":
                continue
            for n in HUGE:
                if parameter["in"] == "path":
                    url = concrete.replace("{" + parameter["name"] + "}", str(n))
                    params = {}
                else:
                    url = concrete.replace("{event_id}", "1")
                    params = {parameter["name"]: n}
                if "{" in url:
                    continue
                response = service.http.get(url, params=params)
                assert response.status_code < 500, (url, params, response.text)


@pytest.mark.slow
@pytest.mark.parametrize("stamp", ["9" * 400, "9" * 5000, "²³", "12345678901234567890"])
def test_an_absurd_signature_timestamp_is_a_401(service: ServiceProcess, stamp: str) -> None:
    response = httpx.post(
        service.url + "/v1/events/s3",
        content=notification(record_for("data", "incoming/x.zip", b"x")),
        headers={"X-AutoInfer-Signature": (f"t={stamp},v1=" + "ab" * 32).encode("latin-1")},
    )
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "unauthorized"


@pytest.mark.slow
def test_a_reused_idempotency_key_with_another_spec_is_a_409(service: ServiceProcess) -> None:
    headers = {"Idempotency-Key": "order-42"}
    spec = job_spec(service)
    first = service.http.post("/v1/jobs", json=spec, headers=headers)
    again = service.http.post("/v1/jobs", json=spec, headers=headers)
    other = service.http.post("/v1/jobs", json={**spec, "name": "another"}, headers=headers)

    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    assert other.status_code == 409, other.text
    error = other.json()["error"]
    assert error["code"] == "conflict"
    assert "'order-42' was used for a different job spec" in error["message"]
    assert service.count_jobs() == 1


# --- pages and lists --------------------------------------------------------------------------


@pytest.mark.slow
def test_dashboard_pages_carry_a_csp_and_refuse_framing(service: ServiceProcess) -> None:
    for page in ("/", "/events", "/triggers", "/jobs/x"):
        headers = httpx.get(service.url + page).headers
        assert headers["content-security-policy"].startswith("default-src 'self'"), page
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert headers["x-frame-options"] == "DENY"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"
    api = service.http.get("/v1/jobs").headers
    assert api["x-content-type-options"] == "nosniff"


@pytest.mark.slow
def test_lists_are_summaries_and_details_keep_spec_and_raw(service: ServiceProcess) -> None:
    spec = job_spec(service)
    job = service.post("/v1/jobs", spec)
    [listed] = service.get("/v1/jobs")["jobs"]
    assert "spec" not in listed
    assert listed["input_uri"] == spec["data"]["input_uri"]
    detail = service.get(f"/v1/jobs/{job['id']}")["spec"]["data"]
    assert detail["input_uri"] == spec["data"]["input_uri"]

    bulky = record_for("elsewhere", "incoming/bulky.zip", b"x")
    bulky["padding"] = "p" * (4 * MIB)
    bulky["s3"]["extra"] = list(range(10_000))
    assert service.post_event(notification(bulky)).status_code == 200
    [event] = service.get("/v1/events")["events"]
    assert "raw" not in event and event["key"] == "incoming/bulky.zip"
    raw = service.get(f"/v1/events/{event['id']}")["raw"]
    assert len(json.dumps(raw)) < 70 * 1024
    assert raw["s3"]["object"]["key"] == "incoming/bulky.zip"
    assert "truncated" in json.dumps(raw)


@pytest.mark.slow
@pytest.mark.parametrize(
    "path",
    [
        "/v1/jobs/../gallery/7.jpg",
        "/v1/jobs/%2e%2e/gallery/7.jpg",
        "/v1/jobs/%2E%2E/gallery/7.jpg",
        "/v1/jobs/%2e%2e%2f%2e%2e/gallery/7.jpg",
        "/v1/jobs/%2Ftmp/gallery/7.jpg",
        "/v1/jobs/./gallery/7.jpg",
    ],
)
def test_the_gallery_route_serves_nothing_outside_a_jobs_gallery(
    service: ServiceProcess, path: str
) -> None:
    data_dir = Path(service.workdir / "service")
    (data_dir / "7.jpg").write_bytes(b"secret")
    (data_dir / "gallery").mkdir(exist_ok=True)
    (data_dir / "gallery" / "7.jpg").write_bytes(b"secret")
    response = request(service.url, "GET", path, ADMIN)
    assert response.status == 404, (path, response.body[:100])
    assert b"secret" not in response.body
