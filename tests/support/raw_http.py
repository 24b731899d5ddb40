"""HTTP/1.1 spoken by hand, for tests that need what clients normally hide: a request whose
body never comes, a path sent exactly as written (`..` not normalised), headers read before
the body is sent; and what a process costs, read from /proc."""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from typing import Any


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    closed: bool  # the server closed the connection after answering

    def json(self) -> Any:
        return json.loads(self.body)


def open_request(
    url: str, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b""
) -> socket.socket:
    """A connection with the request line, the headers and `body` sent (nothing more)."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=60)
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    return sock


def read_response(sock: socket.socket, timeout: float = 60.0) -> RawResponse:
    """The response on `sock` (Content-Length framed), and whether the server then closed
    the connection; socket.timeout if nothing comes within `timeout` seconds."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a response: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    # Closed at once, or kept alive (an idle keep-alive connection lasts limits.keep_alive_s,
    # 5 s by default: longer than this look).
    sock.settimeout(2.0)
    try:
        closed = sock.recv(1) == b""
    except ConnectionResetError:
        closed = True
    except TimeoutError:
        closed = False
    return RawResponse(int(status_line.split()[1]), headers, body[:length], closed)


def read_status(sock: socket.socket, timeout: float = 60.0) -> tuple[int, bytes]:
    """The status of the response on `sock` and what came with its head (for streams, whose
    body does not end)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a response: {data!r}")
        data += chunk
    return int(data.split(b" ", 2)[1]), data


def request(
    url: str, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b""
) -> RawResponse:
    with open_request(url, method, path, headers, body) as sock:
        return read_response(sock)


def rss_bytes(pid: int, field: str = "VmRSS") -> int:
    """The resident memory of process `pid` now (VmRSS), or at its peak so far (VmHWM)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} for process {pid}")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time process `pid` has used so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
