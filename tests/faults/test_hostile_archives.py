"""Hostile inputs through the whole service: each job fails with the precise reason, and nothing
is written outside the job's folder."""

from __future__ import annotations

import io
import tarfile
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from autoinfer.events.model import S3Event, s3_record
from autoinfer.output_names import key_stem
from tests.support.service_harness import (
    ServiceProcess,
    classify_trigger,
    files_below,
    make_object,
    notification,
    record_for,
)

MiB = 1024 * 1024
GiB = 1024 * MiB
CLIMB = "../" * 12  # far above the job's folder, whatever its depth


def zip_bytes(entries: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression, compresslevel=9) as archive:
        for name, data in entries.items():
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            info.compress_type = compression
            archive.writestr(info, data)
    return buffer.getvalue()


def tar_bytes(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def tar_member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, linkname, 0o644
    return info


def hostile_inputs(tmp_path: Path) -> dict[str, tuple[bytes | int, str]]:
    """Object name → (content, or the size of a sparse file; the reason its job must give)."""
    outside = tmp_path / "outside"
    return {
        "traversal.zip": (
            zip_bytes({"ok.jpg": b"x", CLIMB + "evil-traversal.txt": b"pwned"}),
            f"traversal.zip: entry '{CLIMB}evil-traversal.txt' has '..' in its path; refused",
        ),
        "absolute.tar": (
            tar_bytes((tar_member(str(outside / "evil-absolute.txt")), b"pwned")),
            f"absolute.tar: entry '{outside}/evil-absolute.txt' has an absolute path; refused",
        ),
        "symlink.tar": (
            tar_bytes(
                (tar_member("link", tarfile.SYMTYPE, str(outside)), None),
                (tar_member("link/evil-through-link.txt"), b"pwned"),
            ),
            f"symlink.tar: entry 'link' is a symbolic link (to '{outside}'); refused",
        ),
        "hardlink.tar": (
            tar_bytes((tar_member("hard", tarfile.LNKTYPE, "/etc/hostname"), None)),
            "hardlink.tar: entry 'hard' is a hard link (to '/etc/hostname'); refused",
        ),
        "bomb.zip": (
            zip_bytes({"zeros.bin": bytes(64 * MiB)}),
            "bomb.zip: entry 'zeros.bin' expands 1",  # 1000-odd : 1
        ),
        "nested.zip": (
            zip_bytes({"photos/inner.zip": zip_bytes({"a.jpg": b"x"})}),
            "nested.zip: nested archive 'photos/inner.zip' is not extracted",
        ),
        "huge.bin": (
            GiB + 64 * MiB,
            "is 1.06 GiB, more than the job's disk_size of 1 GiB",
        ),
    }


def put_object(store: Path, key: str, content: bytes | int) -> dict:
    path = store / "data" / key
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
        return record_for("data", key, content)
    with path.open("wb") as file:
        file.truncate(content)  # sparse: takes no room until it is copied
    event = S3Event(
        bucket="data",
        key=key,
        event_name="ObjectCreated:Put",
        event_time=datetime.now(UTC),
        size=content,
        etag="sparse-file",
    )
    return s3_record(event)


@pytest.mark.slow
def test_each_hostile_input_fails_its_job_precisely_and_writes_nothing_outside_it(
    serve: Callable[..., ServiceProcess], tmp_path: Path
) -> None:
    store = tmp_path / "buckets"
    (tmp_path / "outside").mkdir()
    inputs = hostile_inputs(tmp_path)
    records = [
        put_object(store, f"incoming/{name}", content) for name, (content, _) in inputs.items()
    ]
    service = serve(
        triggers=[
            # Three attempts allowed: a hostile input must still fail at its first, for a
            # new attempt would meet the same bytes.
            classify_trigger("hostile", suffix="", max_attempts=3, resources={"disk_size": 1})
        ]
    )
    before = set(files_below(tmp_path))
    for record in records:
        assert service.post_event(notification(record)).status_code == 200
    service.wait_idle(len(inputs), timeout=120)

    jobs = {job["name"]: job for job in service.jobs()}
    for name, (_, reason) in inputs.items():
        job = jobs[key_stem(f"incoming/{name}", "incoming/")]
        assert job["status"] == "failed", f"{name}: {job['status']}"
        assert reason in job["reason"], f"{name}: {job['reason']}"
        assert job["attempt"] == 1

    # A normal object afterwards is still classified.
    record = make_object(store, "data", "incoming/after.zip", 1)
    assert service.post_event(notification(record)).status_code == 200
    service.wait_for(lambda: service.count_jobs("finished") == 1, 120, "the normal job")
    normal = service.jobs(status="finished")[0]

    after = set(files_below(tmp_path))
    new_outside_service = sorted(
        str(p) for p in after - before if not p.is_relative_to(tmp_path / "service")
    )
    # Only the normal object and its result were added to the store; nothing anywhere else.
    assert new_outside_service == [
        str(store / "data" / "incoming" / "after.zip"),
        str(store / "data" / "processed" / "after.zip"),
    ]
    assert not any(p.is_symlink() for p in after)
    assert list((tmp_path / "outside").iterdir()) == []
    for climb in range(1, 13):
        for job in jobs.values():
            data_dir = tmp_path / "service" / "scratch" / f"{job['id']}-1" / "data"
            assert not (data_dir / ("../" * climb) / "evil-traversal.txt").resolve().exists()
    # In the data folder, only the normal job's gallery is new; no job folder is left.
    gallery = tmp_path / "service" / "gallery" / normal["id"]
    assert all(
        p.is_relative_to(gallery) for p in after - before if p.is_relative_to(tmp_path / "service")
    )
    assert not list((tmp_path / "service" / "scratch").iterdir())
