"""Safe extraction: hostile archives are refused precisely and leave nothing behind."""

from __future__ import annotations

import io
import os
import shutil
import stat
import struct
import tarfile
import zipfile
from pathlib import Path

import pytest

from autoinfer.errors import ArchiveError
from autoinfer.storage.archives import ArchiveLimits, archive_kind, extract, make_zip

SEED_IMAGES = Path(__file__).resolve().parents[1] / "data" / "images.zip"  # the seed zip
LIMITS = ArchiveLimits()


def files_under(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")}


def write_zip(path: Path, entries: dict[str, bytes], *, stored: bool = False) -> Path:
    method = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(path, "w", compression=method) as zf:
        for name, data in entries.items():
            zf.writestr(zipfile.ZipInfo(name), data, compress_type=method)
    return path


def add_tar_file(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    tar.addfile(info, io.BytesIO(data))


def write_tar(path: Path, entries: dict[str, bytes], mode: str = "w") -> Path:
    with tarfile.open(path, mode) as tar:
        for name, data in entries.items():
            add_tar_file(tar, name, data)
    return path


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A folder holding the archive; `dest` is extracted into below it."""
    folder = tmp_path / "work"
    folder.mkdir()
    return folder


def refuse(archive: Path, dest: Path, message: str, limits: ArchiveLimits = LIMITS, **kw) -> str:
    """Extract expecting an ArchiveError containing `message`; dest must be left empty."""
    before = files_under(archive.parent)
    with pytest.raises(ArchiveError) as caught:
        extract(archive, dest, limits, **kw)
    assert message in str(caught.value)
    assert str(caught.value).startswith(f"{archive.name}: ")
    assert not dest.exists() or not any(dest.iterdir())
    assert files_under(archive.parent) == before
    return str(caught.value)


# -- archive_kind --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("a.zip", "zip"),
        ("A.ZIP", "zip"),
        ("a.tar", "tar"),
        ("a.tar.gz", "tar"),
        ("a.TGZ", "tar"),
        ("a.Tar.Gz", "tar"),
        ("a.gz", None),
        ("photo.jpg", None),
        ("notes.zip.txt", None),
    ],
)
def test_archive_kind_by_suffix(tmp_path: Path, name: str, kind: str | None) -> None:
    assert archive_kind(tmp_path / name) == kind


def test_archive_kind_recognises_an_extensionless_download_by_its_magic_bytes(
    tmp_path: Path,
) -> None:
    write_zip(tmp_path / "download", {"a.txt": b"a"})
    write_tar(tmp_path / "tarball", {"a.txt": b"a"}, mode="w:gz")
    (tmp_path / "plain").write_bytes(b"just text")
    assert archive_kind(tmp_path / "download") == "zip"
    assert archive_kind(tmp_path / "tarball") == "tar"
    assert archive_kind(tmp_path / "plain") is None


def test_archive_kind_trusts_content_over_a_misleading_archive_suffix(tmp_path: Path) -> None:
    write_tar(tmp_path / "really-a-tar.zip", {"a.txt": b"a"}, mode="w:gz")
    assert archive_kind(tmp_path / "really-a-tar.zip") == "tar"


def test_archive_kind_leaves_files_with_other_extensions_alone(tmp_path: Path) -> None:
    write_zip(tmp_path / "report.docx", {"word/document.xml": b"<x/>"})
    assert archive_kind(tmp_path / "report.docx") is None


# -- legitimate archives ----------------------------------------------------------------------


def test_seed_images_zip_extracts_its_five_images(work: Path) -> None:
    archive = shutil.copy(SEED_IMAGES, work / "images.zip")
    written = extract(Path(archive), work / "dest", LIMITS)
    assert len(written) == 5
    assert all(p.suffix == ".JPEG" and p.parent == work / "dest" for p in written)
    with zipfile.ZipFile(SEED_IMAGES) as zf:
        assert (work / "dest" / written[0].name).read_bytes() == zf.read(written[0].name)


@pytest.mark.parametrize(
    ("name", "mode"),
    [("data.tar", "w"), ("data.tar.gz", "w:gz"), ("data.tgz", "w:gz"), ("DATA.TAR.GZ", "w:gz")],
)
def test_tar_archives_extract_with_their_folders(work: Path, name: str, mode: str) -> None:
    archive = work / name
    with tarfile.open(archive, mode) as tar:
        folder = tarfile.TarInfo("imgs")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
        add_tar_file(tar, "imgs/a.jpg", b"A" * 100)
        add_tar_file(tar, "imgs/sub/b.jpg", b"B" * 10)
    written = extract(archive, work / "dest", LIMITS)
    assert written == [work / "dest/imgs/a.jpg", work / "dest/imgs/sub/b.jpg"]
    assert (work / "dest/imgs/a.jpg").read_bytes() == b"A" * 100


def test_zip_extracts_nested_folders_and_empty_folders(work: Path) -> None:
    archive = write_zip(work / "x.zip", {"a/": b"", "a/b/c.txt": b"c", "empty/": b"", "d.txt": b""})
    written = extract(archive, work / "dest", LIMITS)
    assert written == [work / "dest/a/b/c.txt", work / "dest/d.txt"]
    assert (work / "dest/empty").is_dir()
    assert (work / "dest/d.txt").read_bytes() == b""


def test_executable_bit_survives_extraction(work: Path) -> None:
    archive = work / "code.tar"
    with tarfile.open(archive, "w") as tar:
        add_tar_file(tar, "run.sh", b"#!/bin/sh\n", mode=0o755)
        add_tar_file(tar, "data.txt", b"x", mode=0o666)
    extract(archive, work / "dest", LIMITS)
    assert (work / "dest/run.sh").stat().st_mode & 0o777 == 0o755
    assert (work / "dest/data.txt").stat().st_mode & 0o777 == 0o644


def test_macos_junk_is_skipped(work: Path) -> None:
    archive = write_zip(
        work / "mac.zip",
        {"a.jpg": b"a", "__MACOSX/._a.jpg": b"junk", ".DS_Store": b"junk", "sub/._b.jpg": b"j"},
    )
    assert extract(archive, work / "dest", LIMITS) == [work / "dest/a.jpg"]
    assert files_under(work / "dest") == {"a.jpg"}


def test_backslash_separators_from_windows_zip_tools_become_folders(work: Path) -> None:
    archive = write_zip(work / "win.zip", {"photos\\cat.jpg": b"cat"})
    assert extract(archive, work / "dest", LIMITS) == [work / "dest/photos/cat.jpg"]


def test_extraction_into_an_existing_folder_keeps_its_files(work: Path) -> None:
    dest = work / "dest"
    dest.mkdir()
    (dest / "mine.txt").write_text("mine")
    archive = write_zip(work / "x.zip", {"a.txt": b"a"})
    extract(archive, dest, LIMITS)
    assert files_under(dest) == {"mine.txt", "a.txt"}


def test_nested_archive_is_kept_as_a_file_when_allowed(work: Path) -> None:
    inner = write_zip(work / "inner.zip", {"a.txt": b"a"}).read_bytes()
    archive = write_zip(work / "outer.zip", {"inner.zip": inner, "b.txt": b"b"})
    written = extract(archive, work / "dest", ArchiveLimits(nested="keep"))
    assert (work / "dest/inner.zip").read_bytes() == inner
    assert work / "dest/inner.zip" in written


# -- hostile archives -------------------------------------------------------------------------


@pytest.mark.parametrize("entry", ["../evil.txt", "a/../../evil.txt", "..\\evil.txt"])
def test_zip_entry_with_dot_dot_is_refused(work: Path, entry: str) -> None:
    archive = write_zip(work / "x.zip", {"ok.txt": b"ok", entry: b"evil"})
    message = refuse(archive, work / "dest", f"entry '{entry}' has '..' in its path")
    assert "outside the destination" in message
    assert not (work / "evil.txt").exists()


def test_zip_entry_with_absolute_path_is_refused(work: Path, tmp_path: Path) -> None:
    target = tmp_path / "evil.txt"
    archive = write_zip(work / "x.zip", {str(target): b"evil"})
    refuse(archive, work / "dest", f"entry '{target}' has an absolute path")
    assert not target.exists()


@pytest.mark.parametrize("entry", ["C:\\Windows\\evil.dll", "c:/evil.txt", "\\\\server\\share\\x"])
def test_windows_absolute_entries_are_refused(work: Path, entry: str) -> None:
    archive = write_zip(work / "x.zip", {entry: b"evil"})
    refuse(archive, work / "dest", "has an absolute path")


def test_tar_entry_with_dot_dot_is_refused_and_earlier_files_are_removed(work: Path) -> None:
    archive = write_tar(work / "x.tar", {"good.txt": b"good", "../evil.txt": b"evil"})
    refuse(archive, work / "dest", "entry '../evil.txt' has '..' in its path")
    assert not (work / "evil.txt").exists()
    assert not (work / "dest").exists()


def test_tar_entry_with_absolute_path_is_refused(work: Path, tmp_path: Path) -> None:
    target = tmp_path / "evil.txt"
    archive = write_tar(work / "x.tar.gz", {str(target): b"evil"}, mode="w:gz")
    refuse(archive, work / "dest", "has an absolute path")
    assert not target.exists()


def test_tar_symlink_is_refused(work: Path) -> None:
    archive = work / "x.tar"
    with tarfile.open(archive, "w") as tar:
        link = tarfile.TarInfo("passwd")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tar.addfile(link)
        add_tar_file(tar, "passwd", b"overwrite through the link")
    refuse(archive, work / "dest", "entry 'passwd' is a symbolic link (to '/etc/passwd')")


def test_tar_symlink_pointing_inside_is_refused_too(work: Path) -> None:
    archive = work / "x.tar"
    with tarfile.open(archive, "w") as tar:
        add_tar_file(tar, "a.txt", b"a")
        link = tarfile.TarInfo("b.txt")
        link.type = tarfile.SYMTYPE
        link.linkname = "a.txt"
        tar.addfile(link)
    refuse(archive, work / "dest", "entry 'b.txt' is a symbolic link")


def test_tar_hard_link_is_refused(work: Path) -> None:
    archive = work / "x.tar"
    with tarfile.open(archive, "w") as tar:
        link = tarfile.TarInfo("shadow")
        link.type = tarfile.LNKTYPE
        link.linkname = "/etc/shadow"
        tar.addfile(link)
    refuse(archive, work / "dest", "entry 'shadow' is a hard link (to '/etc/shadow')")


@pytest.mark.parametrize("kind", [tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE])
def test_tar_device_and_fifo_entries_are_refused(work: Path, kind: bytes) -> None:
    archive = work / "x.tar"
    with tarfile.open(archive, "w") as tar:
        device = tarfile.TarInfo("dev")
        device.type = kind
        tar.addfile(device)
    refuse(archive, work / "dest", "entry 'dev' is a device or special file")


def test_zip_symlink_entry_is_refused(work: Path) -> None:
    archive = work / "x.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo("link")
        info.create_system = 3
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    refuse(archive, work / "dest", "entry 'link' is a symbolic link")


def test_existing_link_in_dest_is_not_followed_out(work: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = work / "dest"
    dest.mkdir()
    (dest / "out").symlink_to(outside)
    archive = write_zip(work / "x.zip", {"out/evil.txt": b"evil"})
    with pytest.raises(ArchiveError, match="resolves outside"):
        extract(archive, dest, LIMITS)
    assert not any(outside.iterdir())


def test_zip_bomb_entry_is_refused_by_its_compression_ratio(work: Path) -> None:
    archive = write_zip(work / "bomb.zip", {"zeros.bin": bytes(8 * 1024 * 1024)})
    refuse(archive, work / "dest", "entry 'zeros.bin' expands")
    message = refuse(archive, work / "dest", "refusing a likely zip bomb")
    assert "(limit 250:1)" in message


def test_many_small_bombs_are_refused_by_the_overall_ratio(work: Path) -> None:
    entries = {f"z{i}.bin": bytes(900 * 1024) for i in range(8)}  # each under the ratio floor
    archive = write_zip(work / "bombs.zip", entries)
    refuse(archive, work / "dest", "overall (limit 250:1)")


def test_tar_gz_bomb_is_refused_by_the_overall_ratio(work: Path) -> None:
    archive = write_tar(work / "bomb.tar.gz", {"zeros.bin": bytes(16 * 1024 * 1024)}, mode="w:gz")
    refuse(archive, work / "dest", "refusing a likely decompression bomb")


def test_small_highly_compressible_files_are_not_mistaken_for_bombs(work: Path) -> None:
    archive = write_zip(work / "x.zip", {"blank.csv": b" " * 100_000})
    assert extract(archive, work / "dest", LIMITS) == [work / "dest/blank.csv"]


def test_more_entries_than_the_limit_are_refused(work: Path) -> None:
    archive = write_zip(work / "x.zip", {f"{i}.txt": b"x" for i in range(11)})
    refuse(archive, work / "dest", "holds 11 entries (limit 10)", ArchiveLimits(max_entries=10))


def test_tar_with_more_entries_than_the_limit_is_refused(work: Path) -> None:
    archive = write_tar(work / "x.tgz", {f"{i}.txt": b"x" for i in range(11)}, mode="w:gz")
    refuse(archive, work / "dest", "holds more than 10 entries", ArchiveLimits(max_entries=10))


def test_archive_larger_than_the_jobs_disk_size_is_refused(work: Path) -> None:
    archive = write_zip(work / "x.zip", {"a.bin": os.urandom(3000), "b.bin": os.urandom(3000)})
    message = refuse(archive, work / "dest", "exceeds the job's disk_size", budget_bytes=5000)
    assert "unpacks to 5.9 KiB" in message


def test_tar_larger_than_the_jobs_disk_size_is_refused(work: Path) -> None:
    archive = write_tar(work / "x.tar", {"a.bin": os.urandom(3000), "b.bin": os.urandom(3000)})
    refuse(archive, work / "dest", "exceeds the job's disk_size", budget_bytes=5000)


def test_archive_larger_than_max_total_bytes_is_refused(work: Path) -> None:
    archive = write_zip(work / "x.zip", {"a.bin": os.urandom(3000)})
    refuse(
        archive, work / "dest", "above the extraction limit", ArchiveLimits(max_total_bytes=2000)
    )


def test_nested_archive_is_refused_by_default(work: Path) -> None:
    inner = write_zip(work / "inner.zip", {"a.txt": b"a"}).read_bytes()
    archive = write_zip(work / "outer.zip", {"b.txt": b"b", "sub/inner.zip": inner})
    refuse(archive, work / "dest", "nested archive 'sub/inner.zip' is not extracted")


@pytest.mark.parametrize("inner_name", ["inner.tar", "inner.TGZ", "inner.tar.gz"])
def test_nested_tar_in_tar_is_refused_by_default(work: Path, inner_name: str) -> None:
    archive = write_tar(work / "outer.tar", {"b.txt": b"b", inner_name: b"anything"})
    refuse(archive, work / "dest", f"nested archive '{inner_name}' is not extracted")


def test_corrupt_zip_is_refused_with_a_message(work: Path) -> None:
    archive = work / "broken.zip"
    archive.write_bytes(b"PK\x03\x04 this is not really a zip file")
    refuse(archive, work / "dest", "broken.zip: not a valid zip archive: ")


def test_truncated_zip_is_refused_with_a_message(work: Path) -> None:
    archive = work / "cut.zip"
    archive.write_bytes(SEED_IMAGES.read_bytes()[:300_000])
    refuse(archive, work / "dest", "cut.zip: not a valid zip archive: ")


def test_truncated_tar_gz_is_refused_and_cleaned_up(work: Path) -> None:
    full = write_tar(
        work / "full.tar.gz",
        {"a.bin": os.urandom(50_000), "b.bin": os.urandom(50_000)},
        mode="w:gz",
    )
    archive = work / "cut.tar.gz"
    archive.write_bytes(full.read_bytes()[:70_000])
    full.unlink()
    refuse(archive, work / "dest", "cut.tar.gz: ")


def test_garbage_named_tar_is_refused_with_a_message(work: Path) -> None:
    archive = work / "junk.tar.gz"
    archive.write_bytes(os.urandom(2000))
    refuse(archive, work / "dest", "junk.tar.gz: not a valid tar archive: ")


def test_file_that_is_not_an_archive_is_refused(work: Path) -> None:
    photo = work / "photo.jpg"
    photo.write_bytes(b"\xff\xd8\xff")
    refuse(photo, work / "dest", "not an archive")


def _zip_with_declared_size(path: Path, data: bytes, declared: int) -> Path:
    """A deflated one-entry zip whose headers claim `declared` uncompressed bytes."""
    write_zip(path, {"payload.bin": data})
    raw = bytearray(path.read_bytes())
    local = raw.find(b"PK\x03\x04")
    struct.pack_into("<I", raw, local + 22, declared)
    central = raw.find(b"PK\x01\x02")
    struct.pack_into("<I", raw, central + 24, declared)
    path.write_bytes(raw)
    return path


def test_entry_holding_more_than_its_header_declares_is_refused(work: Path) -> None:
    # The header claims 10 bytes, so no size or ratio check fires; the content is 8 MiB.
    archive = _zip_with_declared_size(work / "liar.zip", bytes(8 * 1024 * 1024), declared=10)
    refuse(archive, work / "dest", "entry 'payload.bin' does not match its header")


def test_entry_holding_less_than_its_header_declares_is_refused(work: Path) -> None:
    archive = _zip_with_declared_size(work / "liar.zip", b"short", declared=2000)
    refuse(archive, work / "dest", "entry 'payload.bin'")


# -- make_zip ---------------------------------------------------------------------------------


def _outputs(folder: Path) -> Path:
    (folder / "b").mkdir(parents=True)
    (folder / "z_pred.json").write_text('{"z": 1}')
    (folder / "a_pred.json").write_text('{"a": 1}')
    (folder / "b" / "c_pred.json").write_text('{"c": 1}')
    return folder


def test_make_zip_is_deterministic_across_runs_and_timestamps(tmp_path: Path) -> None:
    folder = _outputs(tmp_path / "out")
    first = make_zip(folder, tmp_path / "one.zip").read_bytes()
    for path in folder.rglob("*"):
        os.utime(path, (1_000_000_000, 1_000_000_000))
    second = make_zip(folder, tmp_path / "two.zip").read_bytes()
    assert first == second


def test_make_zip_stores_sorted_relative_deflated_entries(tmp_path: Path) -> None:
    folder = _outputs(tmp_path / "out")
    zip_path = make_zip(folder, tmp_path / "job.zip")
    with zipfile.ZipFile(zip_path) as zf:
        infos = zf.infolist()
        assert [i.filename for i in infos] == ["a_pred.json", "b/c_pred.json", "z_pred.json"]
        assert {i.compress_type for i in infos} == {zipfile.ZIP_DEFLATED}
        assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
        assert zf.read("b/c_pred.json") == b'{"c": 1}'


def test_make_zip_inside_the_zipped_folder_does_not_include_itself(tmp_path: Path) -> None:
    folder = _outputs(tmp_path / "out")
    zip_path = make_zip(folder, folder / "job.zip")
    make_zip(folder, zip_path)  # again, now that the zip exists in the folder
    with zipfile.ZipFile(zip_path) as zf:
        assert "job.zip" not in zf.namelist()
    assert files_under(folder) == {"a_pred.json", "b", "b/c_pred.json", "z_pred.json", "job.zip"}


def test_make_zip_output_extracts_back_to_the_same_files(tmp_path: Path) -> None:
    folder = _outputs(tmp_path / "out")
    zip_path = make_zip(folder, tmp_path / "job.zip")
    extract(zip_path, tmp_path / "back", LIMITS)
    assert files_under(tmp_path / "back") == files_under(folder)


def test_make_zip_refuses_a_link_to_a_file_outside_the_folder(tmp_path: Path) -> None:
    folder = _outputs(tmp_path / "out")
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    (folder / "leak.json").symlink_to(secret)
    with pytest.raises(ArchiveError, match=r"'leak\.json' is a link to something outside"):
        make_zip(folder, tmp_path / "job.zip")
    assert not (tmp_path / "job.zip").exists()
