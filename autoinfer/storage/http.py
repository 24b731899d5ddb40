"""http(s):// URIs as job input: stat with HEAD, streaming download. Read-only, cannot list."""

from __future__ import annotations

import errno
import tempfile
from collections.abc import Iterator
from datetime import datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx

from autoinfer.errors import StorageError
from autoinfer.storage.base import ObjectInfo, Storage
from autoinfer.storage.budget import ByteBudget

CHUNK_SIZE = 1024 * 1024
FALLBACK_NAME = "download"


def file_name_for(url: str) -> str:
    """The name a download of `url` gets: its path's last segment, percent-decoded.

    `download` when that segment is empty or could not be a plain file name.
    """
    segment = unquote(urlsplit(url).path.rstrip("/").rpartition("/")[2])
    if segment in ("", ".", "..") or any(char in segment for char in "/\\\x00"):
        return FALLBACK_NAME
    return segment


class HttpStorage(Storage):
    """Input-only backend for `http://` and `https://` URIs (follows redirects)."""

    schemes = ("http", "https")
    writable = False

    def __init__(self, timeout: float = 30.0, headers: dict[str, str] | None = None) -> None:
        self.timeout = timeout
        # identity: the file is stored as the server holds it, never re-encoded on the way
        self.headers = {"Accept-Encoding": "identity", **(headers or {})}

    def _client(self) -> httpx.Client:
        return httpx.Client(timeout=self.timeout, follow_redirects=True, headers=self.headers)

    def stat(self, uri: str) -> ObjectInfo:
        """HEAD (GET when the server refuses HEAD); size is -1 when the server does not say.

        The ETag is given without quotes (and without a weak `W/` mark).
        """
        with self._client() as client:
            try:
                response = client.head(uri)
                # 403: presigned URLs (S3's among them) are signed for GET only
                if response.status_code in (403, 405, 501):
                    with client.stream("GET", uri) as streamed:
                        response = streamed
            except httpx.HTTPError as error:
                raise StorageError(
                    f"{uri}: {describe_transport_error(error, self.timeout)}"
                ) from None
        _check_status(uri, response)
        return _info(uri, response)

    def list(self, uri: str) -> Iterator[ObjectInfo]:
        """Always a StorageError: HTTP has no listing."""
        raise StorageError(
            f"{uri}: http(s) URIs cannot be listed; name a single file or archive instead"
        )

    def download(self, uri: str, dest: Path, budget: ByteBudget | None = None) -> Path:
        """Stream `uri` into `dest/<last path segment>` (written whole or not at all). With a
        `budget`, a `Content-Length` past it is refused before the body is read, and the bytes
        received are counted as they arrive."""
        target = dest / file_name_for(uri)
        try:
            dest.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(dir=dest, prefix=".autoinfer-download-")
        except OSError as error:
            raise StorageError(
                f"{uri}: cannot write into {dest}: {error.strerror or error}"
            ) from None
        tmp = Path(tmp_name)
        try:
            with open(fd, "wb") as out, self._client() as client:
                try:
                    with client.stream("GET", uri) as response:
                        _check_status(uri, response)
                        expected = response.headers.get("content-length")
                        if budget is not None and expected is not None and expected.isdigit():
                            budget.check_declared(uri, int(expected))
                        received = 0
                        # raw bytes: a Content-Encoding must not change what the file holds
                        for chunk in response.iter_raw(CHUNK_SIZE):
                            if budget is not None:
                                budget.take(uri, len(chunk))
                            out.write(chunk)
                            received += len(chunk)
                except httpx.HTTPError as error:
                    reason = describe_transport_error(error, self.timeout)
                    raise StorageError(f"{uri}: {reason}") from None
            if expected is not None and expected.isdigit() and received != int(expected):
                raise StorageError(
                    f"{uri}: truncated download ({received} of {int(expected)} bytes)"
                )
            tmp.replace(target)
        except OSError as error:
            raise StorageError(f"{uri}: cannot write {target}: {error.strerror or error}") from None
        finally:
            tmp.unlink(missing_ok=True)
        return target

    def upload(self, src: Path, uri: str) -> ObjectInfo:
        """Always a StorageError: http(s) is input only."""
        raise StorageError(f"{uri}: http(s) is input only; cannot upload")


def describe_transport_error(error: httpx.HTTPError, timeout: float) -> str:
    """One short phrase for a failed request: `connection refused`, `timed out after 30s`..."""
    if isinstance(error, httpx.TimeoutException):
        return f"timed out after {timeout:g}s"
    if isinstance(error, httpx.ConnectError):
        cause = error.__cause__ or error.__context__
        text = str(error)
        if getattr(cause, "errno", None) == errno.ECONNREFUSED or "refused" in text.lower():
            return "connection refused"
        return f"cannot connect: {_strip_errno(text)}"
    if isinstance(error, httpx.TooManyRedirects):
        return "too many redirects"
    if isinstance(error, httpx.RemoteProtocolError):
        return f"the server broke the connection: {error}"
    return f"{type(error).__name__}: {error}"


def _strip_errno(text: str) -> str:
    """`[Errno -2] Name or service not known` → `Name or service not known`."""
    if text.startswith("[Errno") and "] " in text:
        return text.split("] ", 1)[1]
    return text or "unknown error"


def _check_status(uri: str, response: httpx.Response) -> None:
    code = response.status_code
    if code < 400:
        return
    if code == 404:
        raise StorageError(f"{uri}: not found (HTTP 404)")
    if code in (401, 403):
        raise StorageError(f"{uri}: access denied (HTTP {code})")
    raise StorageError(f"{uri}: HTTP {code} {response.reason_phrase}".rstrip())


def _info(uri: str, response: httpx.Response) -> ObjectInfo:
    headers = response.headers
    length = headers.get("content-length", "")
    etag = headers.get("etag")
    if etag is not None:
        etag = etag.removeprefix("W/").strip('"') or None
    return ObjectInfo(
        uri=uri,
        key=unquote(urlsplit(uri).path.lstrip("/")),
        size=int(length) if length.isdigit() else -1,
        etag=etag,
        modified=_http_date(headers.get("last-modified")),
    )


def _http_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
