"""Downloads within a byte budget: declared sizes refused before copying, bytes counted while
copying (local files and folders, HTTP with and without Content-Length, S3 objects and prefixes)."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from autoinfer.errors import InputRejected
from autoinfer.storage import HttpStorage, LocalStorage
from autoinfer.storage.budget import ByteBudget
from autoinfer.storage.s3 import S3Storage

GIB = 1024**3
MIB = 1024**2


def budget(limit: int) -> ByteBudget:
    return ByteBudget(limit, label="input", limit_text=f"the job's disk_size of {limit} bytes")


def written(folder: Path) -> int:
    return sum(p.stat().st_blocks * 512 for p in folder.rglob("*") if p.is_file())


def test_a_sparse_local_file_larger_than_the_budget_is_refused_before_a_byte_is_copied(
    tmp_path: Path,
) -> None:
    big = tmp_path / "big.zip"
    with big.open("wb") as file:
        file.truncate(3 * GIB)  # sparse: 3 GiB to read, nothing on disk
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(InputRejected, match=r"input .*big.zip is 3.00 GiB, more than the job's"):
        LocalStorage().download(str(big), dest, budget(GIB))
    assert list(dest.iterdir()) == []


def test_a_local_folder_larger_than_the_budget_is_refused_before_copying(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for index in range(3):
        (folder / f"{index}.bin").write_bytes(bytes(MIB))
    dest = tmp_path / "dest"
    with pytest.raises(InputRejected, match=r"is 3\.0 MiB, more than"):
        LocalStorage().download(str(folder), dest, budget(2 * MIB))
    assert written(dest) == 0
    assert LocalStorage().download(str(folder), tmp_path / "ok", budget(3 * MIB)).is_dir()


class _Lying(BaseHTTPRequestHandler):
    """Serves /declared (Content-Length 10 GiB, few bytes) and /chunked (no length, 8 MiB)."""

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        if self.path == "/declared.zip":
            self.send_header("Content-Length", str(10 * GIB))
            self.end_headers()
            self.wfile.write(b"x" * 1024)
            return
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        chunk = b"y" * MIB
        try:
            for _ in range(8):
                self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass


@pytest.fixture
def lying_server() -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadingHTTPServer(("127.0.0.1", port), _Lying)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    server.shutdown()
    server.server_close()


def test_http_content_length_past_the_budget_is_refused_before_the_body(
    lying_server: str, tmp_path: Path
) -> None:
    with pytest.raises(InputRejected, match=r"is 10.00 GiB, more than .*refused before"):
        HttpStorage().download(f"{lying_server}/declared.zip", tmp_path, budget(GIB))
    assert written(tmp_path) == 0


def test_http_body_without_a_length_is_stopped_once_past_the_budget(
    lying_server: str, tmp_path: Path
) -> None:
    with pytest.raises(InputRejected, match="arrived while downloading; stopped after"):
        HttpStorage().download(f"{lying_server}/chunked.zip", tmp_path, budget(2 * MIB))
    assert list(tmp_path.iterdir()) == []  # the partial file is removed


def test_s3_object_and_prefix_sizes_are_checked_before_fetching(
    s3_endpoint: str, s3_client: Any, tmp_path: Path
) -> None:
    s3_client.create_bucket(Bucket="data")
    for index in range(3):
        s3_client.put_object(Bucket="data", Key=f"in/{index}.bin", Body=bytes(MIB))
    storage = S3Storage(endpoint_url=s3_endpoint)
    with pytest.raises(InputRejected, match=r"s3://data/in/0.bin is 1.0 MiB, more than"):
        storage.download("s3://data/in/0.bin", tmp_path / "one", budget(MIB - 1))
    limit = budget(2 * MIB + 10)
    with pytest.raises(InputRejected, match=r"s3://data/in/ is 3.0 MiB, more than"):
        storage.download("s3://data/in/", tmp_path / "prefix", limit)
    assert limit.used == 0 and not (tmp_path / "prefix").exists()  # nothing fetched
    fits = budget(3 * MIB)
    storage.download("s3://data/in/", tmp_path / "fits", fits)
    assert fits.used == 3 * MIB  # counted while copying
    assert sorted(os.listdir(tmp_path / "fits")) == ["0.bin", "1.bin", "2.bin"]
