"""LocalStorage (paths, file:// URIs), LocalStore (buckets in a folder) and the registry."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from autoinfer.config import StoreConfig
from autoinfer.errors import ConfigError, StorageError
from autoinfer.storage import (
    HttpStorage,
    LocalStorage,
    LocalStore,
    Storage,
    StorageRegistry,
    join_uri,
)


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


@pytest.fixture
def files(tmp_path: Path) -> Path:
    folder = tmp_path / "files"
    (folder / "sub" / "deeper").mkdir(parents=True)
    (folder / "a.txt").write_bytes(b"alpha")
    (folder / "sub" / "b.txt").write_bytes(b"beta")
    (folder / "sub" / "deeper" / "my photo.jpg").write_bytes(b"\xff\xd8photo")
    return folder


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    root = tmp_path / "buckets"
    (root / "data" / "incoming").mkdir(parents=True)
    (root / "data" / "incoming" / "x.zip").write_bytes(b"zipbytes")
    return LocalStore(root, name="local")


# -- LocalStorage ---------------------------------------------------------------------------------


def test_stat_reports_size_and_the_content_md5_as_etag(files: Path) -> None:
    info = LocalStorage().stat(str(files / "a.txt"))
    assert info.size == 5
    assert info.etag == md5(b"alpha")
    assert info.uri == (files / "a.txt").as_uri()
    assert info.modified is not None


def test_file_uris_are_percent_decoded(files: Path) -> None:
    uri = (files / "sub" / "deeper" / "my photo.jpg").as_uri()
    assert "%20" in uri
    assert LocalStorage().stat(uri).etag == md5(b"\xff\xd8photo")
    assert LocalStorage().stat("file://localhost" + uri[len("file://") :]).size == 7


def test_missing_path_names_the_uri(tmp_path: Path) -> None:
    uri = (tmp_path / "nope.zip").as_uri()
    with pytest.raises(StorageError) as caught:
        LocalStorage().stat(uri)
    assert str(caught.value) == f"{uri}: no such file or folder"
    with pytest.raises(StorageError, match="no such file or folder"):
        LocalStorage().download(uri, tmp_path / "dest")
    with pytest.raises(StorageError, match="no such file or folder"):
        LocalStorage().list(uri)


def test_a_folder_is_not_an_object(files: Path) -> None:
    storage = LocalStorage()
    with pytest.raises(StorageError, match="is a folder"):
        storage.stat(str(files))
    assert not storage.exists(str(files))
    assert storage.exists(str(files / "a.txt"))


def test_file_uri_on_another_host_is_refused() -> None:
    with pytest.raises(StorageError, match="another host"):
        LocalStorage().stat("file://fileserver/share/x.zip")


def test_relative_paths_are_taken_from_base_dir(files: Path) -> None:
    assert LocalStorage(base_dir=files).stat("sub/b.txt").size == 4


def test_list_is_recursive_sorted_and_relative_to_the_folder(files: Path) -> None:
    infos = list(LocalStorage().list(files.as_uri()))
    assert [i.key for i in infos] == ["a.txt", "sub/b.txt", "sub/deeper/my photo.jpg"]
    assert infos[1].etag == md5(b"beta")
    assert infos[2].uri == (files / "sub/deeper/my photo.jpg").as_uri()


def test_list_of_a_file_is_an_error(files: Path) -> None:
    with pytest.raises(StorageError, match="not a folder"):
        LocalStorage().list(str(files / "a.txt"))


def test_download_of_a_file_lands_under_its_name(files: Path, tmp_path: Path) -> None:
    got = LocalStorage().download((files / "sub" / "b.txt").as_uri(), tmp_path / "dest")
    assert got == tmp_path / "dest" / "b.txt"
    assert got.read_bytes() == b"beta"


def test_download_of_a_folder_copies_the_tree(files: Path, tmp_path: Path) -> None:
    got = LocalStorage().download(str(files), tmp_path / "dest")
    assert got == tmp_path / "dest"
    assert tree(got) == tree(files)


def test_upload_writes_the_file_and_returns_its_md5(files: Path, tmp_path: Path) -> None:
    target = tmp_path / "out" / "new" / "a copy.txt"
    info = LocalStorage().upload(files / "a.txt", target.as_uri())
    assert target.read_bytes() == b"alpha"
    assert info.etag == md5(b"alpha")
    assert info.size == 5
    assert [p.name for p in target.parent.iterdir()] == ["a copy.txt"]  # no temp files left


def test_upload_replaces_an_existing_file_whole(files: Path, tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_bytes(b"old content that is longer")
    LocalStorage().upload(files / "a.txt", str(target))
    assert target.read_bytes() == b"alpha"
    assert LocalStorage().stat(str(target)).etag == md5(b"alpha")


def test_upload_of_a_missing_file_keeps_the_old_object(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_bytes(b"old")
    with pytest.raises(StorageError, match="no such file to upload"):
        LocalStorage().upload(tmp_path / "missing.txt", str(target))
    assert target.read_bytes() == b"old"


def test_upload_onto_a_folder_is_refused(files: Path) -> None:
    with pytest.raises(StorageError, match="is a folder"):
        LocalStorage().upload(files / "a.txt", str(files / "sub"))


def test_listing_skips_half_written_uploads(files: Path) -> None:
    (files / ".autoinfer-upload-abc123").write_bytes(b"partial")
    assert ".autoinfer-upload-abc123" not in [i.key for i in LocalStorage().list(str(files))]


def test_upload_tree_keeps_relative_paths(files: Path, tmp_path: Path) -> None:
    prefix = (tmp_path / "copy").as_uri()
    uploaded = LocalStorage().upload_tree(files, prefix)
    assert uploaded[0] == join_uri(prefix, "a.txt")
    assert tree(tmp_path / "copy") == tree(files)


def test_etag_follows_content_changes(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_bytes(b"one")
    storage = LocalStorage()
    assert storage.stat(str(path)).etag == md5(b"one")
    path.write_bytes(b"two")
    assert storage.stat(str(path)).etag == md5(b"two")


# -- LocalStore -----------------------------------------------------------------------------------


def test_store_is_a_storage(store: LocalStore) -> None:
    assert isinstance(store, Storage)


def test_uri_for_and_locate_round_trip(store: LocalStore) -> None:
    uri = store.uri_for("data", "incoming/my file.zip")
    assert uri == (store.root / "data" / "incoming" / "my file.zip").as_uri()
    assert store.locate(uri) == ("data", "incoming/my file.zip")
    assert store.locate(str(store.root / "data" / "incoming" / "x.zip")) == (
        "data",
        "incoming/x.zip",
    )
    assert store.locate(store.uri_for("data", "incoming/")) == ("data", "incoming/")


def test_bucket_uri_joins_to_object_uris(store: LocalStore) -> None:
    assert join_uri(store.bucket_uri("data"), "processed/x.zip") == store.uri_for(
        "data", "processed/x.zip"
    )


def test_join_uri_percent_encodes_names_below_file_uris(store: LocalStore) -> None:
    for name in ["processed/my file.zip", "100%.json", "a#b?.txt"]:
        assert join_uri(store.bucket_uri("data"), name) == store.uri_for("data", name)
        assert store.locate(join_uri(store.bucket_uri("data"), name)) == ("data", name)
    assert join_uri("s3://data/processed", "my file.zip") == "s3://data/processed/my file.zip"


def test_object_info_has_the_bucket_key_and_md5(store: LocalStore) -> None:
    info = store.object_info("data", "incoming/x.zip")
    assert (info.key, info.size, info.etag) == ("incoming/x.zip", 8, md5(b"zipbytes"))
    assert info.uri == store.uri_for("data", "incoming/x.zip")
    assert store.stat(info.uri) == info


@pytest.mark.parametrize("key", ["../escape.txt", "incoming/../../escape.txt", "a/..\\..\\x"])
def test_store_refuses_dot_dot_keys(store: LocalStore, key: str) -> None:
    with pytest.raises(StorageError, match=r"'\.\.' is not allowed"):
        store.path_for("data", key)


@pytest.mark.parametrize("key", ["/etc/passwd", "\\windows\\x", "C:\\x", "c:/x"])
def test_store_refuses_absolute_keys(store: LocalStore, key: str) -> None:
    with pytest.raises(StorageError, match="absolute keys are not allowed"):
        store.uri_for("data", key)


@pytest.mark.parametrize("bucket", ["", ".", "..", "a/b", "..\\x"])
def test_store_refuses_bad_bucket_names(store: LocalStore, bucket: str) -> None:
    with pytest.raises(StorageError, match="not a valid bucket name"):
        store.path_for(bucket, "x")


def test_store_refuses_uris_outside_its_root(store: LocalStore, tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("secret")
    for uri in [
        (tmp_path / "secret.txt").as_uri(),
        store.root.as_uri() + "/data/../../secret.txt",
        str(store.root / ".." / "secret.txt"),
    ]:
        with pytest.raises(StorageError, match="outside the root of store 'local'"):
            store.stat(uri)


def test_store_refuses_its_root_as_a_bucket(store: LocalStore) -> None:
    with pytest.raises(StorageError, match="not a bucket"):
        store.locate(store.root.as_uri())


def test_store_refuses_symlinks_that_point_out_of_the_root(
    store: LocalStore, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    (store.root / "data" / "link").symlink_to(outside)
    (store.root / "data" / "incoming" / "leak.txt").symlink_to(outside / "secret.txt")
    with pytest.raises(StorageError, match="resolves outside the root"):
        store.path_for("data", "link/secret.txt")
    with pytest.raises(StorageError, match="resolves outside the root"):
        store.stat(store.root.as_uri() + "/data/incoming/leak.txt")
    with pytest.raises(StorageError, match="resolves outside the root"):
        store.upload(tmp_path / "outside" / "secret.txt", store.root.as_uri() + "/data/link/x")
    assert [i.key for i in store.list(store.bucket_uri("data"))] == ["incoming/x.zip"]
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]


def test_store_allows_symlinks_that_stay_inside(store: LocalStore) -> None:
    (store.root / "data" / "alias.zip").symlink_to(store.root / "data" / "incoming" / "x.zip")
    assert store.object_info("data", "alias.zip").etag == md5(b"zipbytes")


def test_store_upload_creates_the_bucket_folders(store: LocalStore, files: Path) -> None:
    info = store.upload(files / "a.txt", store.uri_for("results", "processed/job.zip"))
    assert info.key == "processed/job.zip"
    assert (store.root / "results" / "processed" / "job.zip").read_bytes() == b"alpha"


def test_store_list_of_a_missing_prefix_is_empty_but_a_missing_bucket_is_an_error(
    store: LocalStore,
) -> None:
    assert list(store.list(store.uri_for("data", "processed/"))) == []
    with pytest.raises(StorageError, match="no such bucket 'nobucket'"):
        store.list(store.bucket_uri("nobucket"))


def test_store_download_of_a_prefix(store: LocalStore, tmp_path: Path) -> None:
    got = store.download(store.uri_for("data", "incoming/"), tmp_path / "dest")
    assert tree(got) == {"x.zip": b"zipbytes"}


def test_store_works_through_a_symlinked_root(tmp_path: Path) -> None:
    real = tmp_path / "real"
    (real / "data").mkdir(parents=True)
    (real / "data" / "f.txt").write_text("f")
    (tmp_path / "alias").symlink_to(real)
    store = LocalStore(tmp_path / "alias")
    assert store.locate((real / "data" / "f.txt").as_uri()) == ("data", "f.txt")
    assert store.stat(store.uri_for("data", "f.txt")).size == 1


# -- StorageRegistry ------------------------------------------------------------------------------


@pytest.fixture
def registry(tmp_path: Path, store: LocalStore) -> StorageRegistry:
    configs = {
        "local": StoreConfig(type="local", root="buckets"),
        "lake": StoreConfig(type="s3", endpoint_url="http://127.0.0.1:9"),
    }
    return StorageRegistry(configs, base_dir=tmp_path)


def test_registry_resolves_store_roots_from_base_dir(
    registry: StorageRegistry, tmp_path: Path
) -> None:
    assert registry.local_store("local").root == tmp_path / "buckets"


def test_registry_sends_paths_inside_a_store_root_to_that_store(
    registry: StorageRegistry, tmp_path: Path
) -> None:
    local = registry.local_store("local")
    assert registry.for_uri(local.uri_for("data", "incoming/x.zip")) is local
    assert registry.for_uri("buckets/data/incoming/x.zip") is local
    assert registry.for_uri("buckets/data/../../elsewhere") is not local


def test_registry_sends_other_paths_to_plain_local_storage(
    registry: StorageRegistry, files: Path
) -> None:
    storage = registry.for_uri(files.as_uri())
    assert type(storage) is LocalStorage
    assert storage.stat("files/a.txt").size == 5  # relative to base_dir


def test_registry_sends_http_to_the_http_backend(registry: StorageRegistry) -> None:
    assert isinstance(registry.for_uri("https://example.org/x.zip"), HttpStorage)
    assert isinstance(registry.for_uri("HTTP://example.org/x.zip"), HttpStorage)


def test_registry_without_an_s3_backend_says_so(registry: StorageRegistry) -> None:
    with pytest.raises(StorageError) as caught:
        registry.for_uri("s3://data/incoming/x.zip")
    assert str(caught.value) == "s3://data/incoming/x.zip: the S3 backend is not configured"


def test_registered_factory_serves_its_scheme(registry: StorageRegistry, tmp_path: Path) -> None:
    seen: list[str] = []
    backend = LocalStorage(tmp_path)

    def factory(uri: str) -> Storage:
        seen.append(uri)
        return backend

    registry.register("s3", factory)
    assert registry.for_uri("s3://data/x.zip") is backend
    assert seen == ["s3://data/x.zip"]


def test_registry_refuses_unknown_schemes(registry: StorageRegistry) -> None:
    with pytest.raises(StorageError, match="unsupported URI scheme 'ftp'"):
        registry.for_uri("ftp://example.org/x.zip")


def test_registry_local_store_lookup_errors(registry: StorageRegistry) -> None:
    with pytest.raises(ConfigError, match="'lake' is a s3 store, not a local one"):
        registry.local_store("lake")
    with pytest.raises(ConfigError, match="'nope' is not configured"):
        registry.local_store("nope")


def test_local_store_config_without_root_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"stores\.local: a local store needs a `root`"):
        StorageRegistry({"local": StoreConfig(type="local")}, base_dir=tmp_path)


def test_registry_picks_the_deepest_of_nested_store_roots(tmp_path: Path) -> None:
    registry = StorageRegistry(
        {
            "outer": StoreConfig(type="local", root="b"),
            "inner": StoreConfig(type="local", root="b/data/nested"),
        },
        base_dir=tmp_path,
    )
    assert registry.for_uri(str(tmp_path / "b/data/nested/bk/x")) is registry.local_store("inner")
    assert registry.for_uri(str(tmp_path / "b/data/x")) is registry.local_store("outer")
