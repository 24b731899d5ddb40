"""HttpStorage against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from autoinfer.errors import StorageError
from autoinfer.storage import HttpStorage


class Handler(SimpleHTTPRequestHandler):
    """Serves a folder; `/nohead/` and `/signed/` refuse HEAD, `/truncated.zip` is cut short."""

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass

    def end_headers(self) -> None:
        if self.path.endswith(".zip"):
            self.send_header("ETag", '"0123abcd"')
        super().end_headers()

    def do_HEAD(self) -> None:
        if self.path.startswith("/nohead/"):
            self.send_error(405, "Method Not Allowed")
            return
        if self.path.startswith("/signed/"):  # like a presigned URL signed for GET only
            self.send_error(403, "Forbidden")
            return
        super().do_HEAD()

    def do_GET(self) -> None:
        if self.path.startswith(("/nohead/", "/signed/")):
            self.path = self.path[len("/nohead") :]
        if self.path == "/truncated.zip":
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"only a little")
            self.wfile.flush()
            self.close_connection = True
            return
        super().do_GET()


@pytest.fixture
def served(tmp_path: Path) -> Path:
    folder = tmp_path / "served"
    (folder / "sub").mkdir(parents=True)
    (folder / "images.zip").write_bytes(b"PK\x03\x04 pretend zip" * 100)
    (folder / "sub" / "my images.tar.gz").write_bytes(b"\x1f\x8b tar")
    return folder


@pytest.fixture
def server(served: Path) -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(served)))
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_http_is_input_only() -> None:
    assert HttpStorage.writable is False
    assert HttpStorage.schemes == ("http", "https")


def test_download_streams_to_a_file_named_after_the_url(
    server: str, served: Path, tmp_path: Path
) -> None:
    got = HttpStorage().download(f"{server}/images.zip?token=abc", tmp_path / "dest")
    assert got == tmp_path / "dest" / "images.zip"
    assert got.read_bytes() == (served / "images.zip").read_bytes()


def test_download_percent_decodes_the_file_name(server: str, tmp_path: Path) -> None:
    got = HttpStorage().download(f"{server}/sub/my%20images.tar.gz", tmp_path / "dest")
    assert got.name == "my images.tar.gz"
    assert got.read_bytes() == b"\x1f\x8b tar"


def test_download_of_a_url_without_a_file_name_is_named_download(
    server: str, tmp_path: Path
) -> None:
    got = HttpStorage().download(f"{server}/", tmp_path / "dest")
    assert got.name == "download"
    assert b"images.zip" in got.read_bytes()  # the server's folder listing


def test_stat_uses_head(server: str, served: Path) -> None:
    info = HttpStorage().stat(f"{server}/images.zip")
    assert info.size == (served / "images.zip").stat().st_size
    assert info.etag == "0123abcd"
    assert info.modified is not None
    assert info.key == "images.zip"


@pytest.mark.parametrize("prefix", ["nohead", "signed"])
def test_stat_falls_back_to_get_when_head_is_refused(
    server: str, served: Path, prefix: str
) -> None:
    info = HttpStorage().stat(f"{server}/{prefix}/images.zip")
    assert info.size == (served / "images.zip").stat().st_size


def test_missing_url_is_a_not_found_error_and_leaves_no_file(server: str, tmp_path: Path) -> None:
    url = f"{server}/missing.zip"
    with pytest.raises(StorageError) as caught:
        HttpStorage().download(url, tmp_path / "dest")
    assert str(caught.value) == f"{url}: not found (HTTP 404)"
    assert list((tmp_path / "dest").iterdir()) == []
    with pytest.raises(StorageError, match="not found"):
        HttpStorage().stat(url)
    assert not HttpStorage().exists(url)


def test_connection_refused_is_named(closed_port: int, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port}/x.zip"
    with pytest.raises(StorageError) as caught:
        HttpStorage().download(url, tmp_path / "dest")
    assert str(caught.value) == f"{url}: connection refused"
    with pytest.raises(StorageError, match="connection refused"):
        HttpStorage().stat(url)


def test_a_server_that_never_answers_times_out(tmp_path: Path) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # connections complete in the backlog, but nobody answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/x.zip"
        with pytest.raises(StorageError) as caught:
            HttpStorage(timeout=0.2).download(url, tmp_path / "dest")
    assert str(caught.value) == f"{url}: timed out after 0.2s"
    assert list((tmp_path / "dest").iterdir()) == []


def test_truncated_body_is_an_error_and_leaves_no_file(server: str, tmp_path: Path) -> None:
    url = f"{server}/truncated.zip"
    with pytest.raises(StorageError, match=f"^{url}: "):
        HttpStorage().download(url, tmp_path / "dest")
    assert list((tmp_path / "dest").iterdir()) == []


def test_upload_and_list_are_refused(server: str, served: Path) -> None:
    with pytest.raises(StorageError, match="input only; cannot upload"):
        HttpStorage().upload(served / "images.zip", f"{server}/up.zip")
    with pytest.raises(StorageError, match="cannot be listed"):
        HttpStorage().list(f"{server}/")
