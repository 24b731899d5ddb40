"""The s3:// backend against moto's standalone S3 server."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from autoinfer.config import StoreConfig
from autoinfer.errors import ConfigError, StorageError
from autoinfer.storage.s3 import (
    S3Storage,
    choose_store,
    make_s3_factory,
    parse_s3_uri,
)
from tests.s3_server import AwsKeys, aws_client, free_port

MIB = 1024 * 1024


@pytest.fixture
def storage(s3_endpoint: str) -> S3Storage:
    return S3Storage(endpoint_url=s3_endpoint)


@pytest.fixture
def bucket(s3_client: Any) -> str:
    s3_client.create_bucket(Bucket="data")
    return "data"


def put(s3_client: Any, bucket: str, key: str, body: bytes = b"x") -> None:
    s3_client.put_object(Bucket=bucket, Key=key, Body=body)


def tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def failure(call: Any, *args: Any) -> str:
    with pytest.raises(StorageError) as raised:
        result = call(*args)
        if hasattr(result, "__next__"):
            list(result)
    message = str(raised.value)
    assert "\n" not in message
    return message


# --- URIs and store choice (pure) -------------------------------------------------------------


def test_uri_names_bucket_and_unencoded_key() -> None:
    assert parse_s3_uri("s3://data/my photos/été.zip") == ("data", "my photos/été.zip")
    assert parse_s3_uri("S3://data") == ("data", "")
    with pytest.raises(StorageError, match="names no bucket"):
        parse_s3_uri("s3:///key")


def test_only_s3_store_serves_every_bucket_and_first_is_the_fallback() -> None:
    local = StoreConfig(type="local", root="/tmp/x")
    lake = StoreConfig(type="s3", endpoint_url="http://minio:9000")
    aws = StoreConfig(type="s3")
    assert choose_store({"local": local, "lake": lake}, "any") == ("lake", lake)
    assert choose_store({"lake": lake, "aws": aws}, "any") == ("lake", lake)
    assert choose_store({"local": local}, "any") is None


# --- reading and writing ---------------------------------------------------------------------


def test_uploaded_object_reads_back_with_its_stat(
    storage: S3Storage, bucket: str, tmp_path: Path
) -> None:
    src = tmp_path / "x.zip"
    src.write_bytes(b"hello world")
    uri = f"s3://{bucket}/incoming/my photos/été.zip"

    written = storage.upload(src, uri)
    info = storage.stat(uri)

    assert written == info
    assert info.uri == uri and info.key == "incoming/my photos/été.zip"
    assert info.size == 11
    assert info.etag == hashlib.md5(b"hello world").hexdigest()  # no quotes
    assert info.modified is not None and info.modified.tzinfo is not None
    fetched = storage.download(uri, tmp_path / "out")
    assert fetched == tmp_path / "out" / "été.zip"
    assert fetched.read_bytes() == b"hello world"


def test_upload_to_a_prefix_is_refused(storage: S3Storage, bucket: str, tmp_path: Path) -> None:
    src = tmp_path / "x.zip"
    src.write_bytes(b"x")
    assert "names a prefix" in failure(storage.upload, src, f"s3://{bucket}/processed/")


def test_listing_pages_lazily_with_keys_relative_to_the_prefix(
    s3_endpoint: str, s3_client: Any, bucket: str
) -> None:
    for index in range(25):
        put(s3_client, bucket, f"incoming/batch/{index:02d}.jpg")
    put(s3_client, bucket, "incoming-other/not-me.jpg")
    put(s3_client, bucket, "incoming/folder-marker/")
    storage = S3Storage(endpoint_url=s3_endpoint, list_page_size=10)
    calls: list[str] = []
    storage.client.meta.events.register(
        "after-call.s3.ListObjectsV2", lambda **_: calls.append("list")
    )

    listing = storage.list(f"s3://{bucket}/incoming")
    assert len(calls) == 1  # the first page only, until the caller reads on
    keys = [info.key for info in listing]

    assert keys == [f"batch/{index:02d}.jpg" for index in range(25)]
    assert len(calls) == 3
    with_slash = [info.key for info in storage.list(f"s3://{bucket}/incoming/")]
    assert with_slash == keys
    assert next(i.uri for i in storage.list(f"s3://{bucket}/incoming/batch")) == (
        f"s3://{bucket}/incoming/batch/00.jpg"
    )


def test_listing_a_prefix_with_nothing_below_is_empty(storage: S3Storage, bucket: str) -> None:
    assert list(storage.list(f"s3://{bucket}/nothing/here")) == []


def test_prefix_download_keeps_relative_paths(
    storage: S3Storage, s3_client: Any, bucket: str, tmp_path: Path
) -> None:
    put(s3_client, bucket, "inputs/a.jpg", b"a")
    put(s3_client, bucket, "inputs/sub/deeper/b.jpg", b"b")
    put(s3_client, bucket, "inputs/my photos/été 1.jpg", b"c")
    put(s3_client, bucket, "inputs-sibling/not-me.jpg", b"no")
    dest = tmp_path / "dest"

    assert storage.download(f"s3://{bucket}/inputs", dest) == dest

    assert tree(dest) == {
        "a.jpg": b"a",
        "sub/deeper/b.jpg": b"b",
        "my photos/été 1.jpg": b"c",
    }


def test_an_object_wins_over_a_prefix_of_the_same_name(
    storage: S3Storage, s3_client: Any, bucket: str, tmp_path: Path
) -> None:
    put(s3_client, bucket, "thing", b"object")
    put(s3_client, bucket, "thing/below", b"child")

    fetched = storage.download(f"s3://{bucket}/thing", tmp_path)

    assert fetched == tmp_path / "thing" and fetched.read_bytes() == b"object"


def test_download_of_nothing_names_the_uri(storage: S3Storage, bucket: str, tmp_path: Path) -> None:
    uri = f"s3://{bucket}/incoming/x.zip"
    assert failure(storage.download, uri, tmp_path) == f"{uri}: no such object or prefix"


def test_large_upload_goes_in_parts_and_round_trips(
    s3_endpoint: str, bucket: str, tmp_path: Path
) -> None:
    storage = S3Storage(endpoint_url=s3_endpoint, multipart_threshold=5 * MIB)
    src = tmp_path / "big.bin"
    content = os.urandom(12 * MIB)
    src.write_bytes(content)

    info = storage.upload(src, f"s3://{bucket}/processed/big.bin")
    fetched = storage.download(f"s3://{bucket}/processed/big.bin", tmp_path / "back")

    assert info.size == len(content)
    assert info.etag is not None and info.etag.endswith("-3")  # S3's multipart ETag: 3 parts
    assert hashlib.sha256(fetched.read_bytes()).digest() == hashlib.sha256(content).digest()


# --- failures as one line --------------------------------------------------------------------


def test_missing_bucket_is_one_clear_line(storage: S3Storage, tmp_path: Path) -> None:
    src = tmp_path / "x.zip"
    src.write_bytes(b"x")
    uri = "s3://nope/incoming/x.zip"
    expected = f"{uri}: bucket 'nope' does not exist (NoSuchBucket)"

    assert failure(storage.stat, uri) == expected
    assert failure(storage.list, uri) == expected
    assert failure(storage.download, uri, tmp_path) == expected
    assert failure(storage.upload, src, uri) == expected


def test_missing_object_in_existing_bucket(storage: S3Storage, bucket: str) -> None:
    uri = f"s3://{bucket}/incoming/x.zip"
    assert failure(storage.stat, uri) == f"{uri}: no such object (NoSuchKey)"


def test_unreachable_endpoint_is_one_clear_line(s3_endpoint: str, tmp_path: Path) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    storage = S3Storage(endpoint_url=endpoint, max_attempts=1, connect_timeout_s=2)
    uri = "s3://data/incoming/x.zip"
    expected = f"{uri}: cannot reach endpoint {endpoint} — is the S3 server running?"

    assert failure(storage.stat, uri) == expected
    assert failure(storage.download, uri, tmp_path) == expected


def lake(endpoint: str, secret: str) -> tuple[S3Storage, str]:
    """The s3 store `lake` as configured with `credentials: secret:lake` holding `secret`."""
    config = StoreConfig(type="s3", endpoint_url=endpoint, credentials="secret:lake")
    secrets = {"secret:lake": secret}
    storage = make_s3_factory({"lake": config}, secrets.__getitem__, max_attempts=1)(
        "s3://allowed-data"
    )
    assert isinstance(storage, S3Storage)
    return storage, "s3://allowed-data/incoming/x.zip"


def test_store_credentials_from_a_secret_are_used(
    s3_endpoint: str, s3_auth: AwsKeys, tmp_path: Path
) -> None:
    storage, uri = lake(s3_endpoint, s3_auth.secret_value)
    admin = aws_client(
        "s3",
        s3_endpoint,
        aws_access_key_id=s3_auth.access_key_id,
        aws_secret_access_key=s3_auth.secret_access_key,
    )
    admin.create_bucket(Bucket="allowed-data")
    src = tmp_path / "x.zip"
    src.write_bytes(b"x")

    assert storage.upload(src, uri).size == 1


def test_unknown_access_key_is_one_clear_line(
    s3_endpoint: str, s3_auth: AwsKeys, tmp_path: Path
) -> None:
    storage, uri = lake(s3_endpoint, f"AKIANOTKNOWN:{s3_auth.secret_access_key}")
    message = failure(storage.list, uri)
    assert message == (
        f"{uri}: the endpoint does not know the access key id (InvalidAccessKeyId) — "
        "check the credentials of store 'lake'"
    )
    assert s3_auth.secret_access_key not in message


def test_wrong_secret_key_is_one_clear_line(s3_endpoint: str, s3_auth: AwsKeys) -> None:
    storage, uri = lake(s3_endpoint, f"{s3_auth.access_key_id}:wrong-secret")
    assert failure(storage.list, uri) == (
        f"{uri}: the request signature does not match; the secret access key is probably "
        "wrong (SignatureDoesNotMatch) — check the credentials of store 'lake'"
    )


def test_access_denied_is_one_clear_line(s3_endpoint: str, s3_auth: AwsKeys) -> None:
    storage, _ = lake(s3_endpoint, s3_auth.secret_value)
    uri = "s3://forbidden/incoming/x.zip"  # the user's policy allows only allowed-* buckets
    assert failure(storage.list, uri) == (
        f"{uri}: access denied (AccessDenied) — check the credentials of store 'lake'"
    )


def test_credentials_secret_must_hold_key_and_secret(s3_endpoint: str) -> None:
    with pytest.raises(ConfigError) as raised:
        lake(s3_endpoint, "only-one-part")
    assert "ACCESS_KEY_ID:SECRET_ACCESS_KEY" in str(raised.value)
    assert "only-one-part" not in str(raised.value)


# --- the registry's factory ------------------------------------------------------------------


def test_without_s3_store_the_standard_chain_and_aws_endpoint_url_are_used(
    s3_endpoint: str, bucket: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    factory = make_s3_factory({"local": StoreConfig(type="local", root=str(tmp_path))})
    src = tmp_path / "x.zip"
    src.write_bytes(b"x")

    storage = factory(f"s3://{bucket}/a.zip")
    storage.upload(src, f"s3://{bucket}/a.zip")

    assert factory(f"s3://{bucket}/b.zip") is storage  # one client per store
    assert storage.stat(f"s3://{bucket}/a.zip").size == 1


def test_aws_profile_named_by_the_store_is_used(
    s3_endpoint: str, s3_auth: AwsKeys, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    credentials = tmp_path / "credentials"
    credentials.write_text(
        f"[lake]\naws_access_key_id = {s3_auth.access_key_id}\n"
        f"aws_secret_access_key = {s3_auth.secret_access_key}\n"
    )
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    config = StoreConfig(type="s3", endpoint_url=s3_endpoint, profile="lake")
    storage = make_s3_factory({"lake": config})("s3://allowed-data")
    tmp = tmp_path / "x.zip"
    tmp.write_bytes(b"x")
    aws_client(
        "s3",
        s3_endpoint,
        aws_access_key_id=s3_auth.access_key_id,
        aws_secret_access_key=s3_auth.secret_access_key,
    ).create_bucket(Bucket="allowed-data")

    assert storage.upload(tmp, "s3://allowed-data/x.zip").size == 1


def test_no_credentials_at_all_is_one_clear_line(
    s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    storage = S3Storage(endpoint_url=s3_endpoint, max_attempts=1)
    assert failure(storage.list, "s3://data/x") == (
        "s3://data/x: no AWS credentials found — set AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or the store's `credentials`"
    )


def test_missing_profile_is_one_clear_line(s3_endpoint: str) -> None:
    config = StoreConfig(type="s3", endpoint_url=s3_endpoint, profile="absent")
    storage = make_s3_factory({"lake": config})("s3://data")
    assert failure(storage.list, "s3://data/x") == (
        "s3://data/x: AWS profile 'absent' is not configured (ProfileNotFound)"
    )
