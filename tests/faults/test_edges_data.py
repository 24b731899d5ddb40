"""The data edges of a real `autoinfer serve`: bad records among good ones, colliding object
names, hostile names in the CLI, inputs larger than the job's disk, image bombs, and what the
data folder lets other users read."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from autoinfer.output_names import key_stem
from tests.support.bombs import bomb_png
from tests.support.service_harness import (
    API_KEY,
    REPO,
    ServiceProcess,
    classify_trigger,
    jpeg_bytes,
    notification,
    record_for,
)

GIB = 1024**3


def put(store: Path, key: str, data: bytes) -> dict[str, Any]:
    path = store / "data" / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return record_for("data", key, data)


def zip_of(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def tar_gz_of(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def results(store: Path) -> dict[str, set[str]]:
    """processed/<name> → the image files its predictions name."""
    found = {}
    for archive in sorted((store / "data" / "processed").iterdir()):
        with zipfile.ZipFile(archive) as opened:
            found[archive.name] = {
                json.loads(opened.read(n))["file"]
                for n in opened.namelist()
                if n.endswith("_pred.json")
            }
    return found


def cli(service: ServiceProcess, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOINFER_")}
    env.update(COLUMNS="400", AUTOINFER_URL=service.url, AUTOINFER_KEY=API_KEY)
    return subprocess.run(
        [sys.executable, "-m", "autoinfer.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# --- records ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_body_with_bad_records_stores_the_good_ones_and_names_each_bad_one(
    serve: Callable[..., ServiceProcess], tmp_path: Path
) -> None:
    store = tmp_path / "buckets"
    service = serve(triggers=[classify_trigger()])
    good = [
        put(store, f"incoming/good-{i}.zip", zip_of({f"{i}.jpg": jpeg_bytes(i)})) for i in range(2)
    ]
    too_big = record_for("data", "incoming/too-big.zip", b"x")
    too_big["s3"]["object"]["size"] = 2**63
    long_etag = record_for("data", "incoming/long-etag.zip", b"x")
    long_etag["s3"]["object"]["eTag"] = "e" * 500
    deep = record_for("data", "incoming/deep.zip", b"x")
    deep["extra"] = json.loads("[" * 500 + "]" * 500)
    body = notification(good[0], too_big, long_etag, deep, good[1])

    response = service.post_event(body)

    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["received"] == 2
    assert [(r["index"], r["reason"]) for r in answer["rejected"]] == [
        (
            1,
            "Records[1].s3.object.size: 9223372036854775808 is more than the largest size stored (2^63 - 1)",
        ),
        (2, "Records[2].s3.object.eTag: 500 characters long; at most 200 stored"),
        (3, "Records[3]: nested more than 32 levels deep"),
    ]
    rejected = {e["id"]: e for e in service.events(outcome="rejected")}
    assert sorted(rejected) == sorted(r["id"] for r in answer["rejected"])
    assert all(e["reason"].startswith("Records[") for e in rejected.values())
    service.wait_for(lambda: service.count_jobs("finished") == 2, 120, "the good records' jobs")

    # A body that is nothing but nesting is a 400 naming it, never a 500.
    nested = service.post_event(b'{"Records": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    assert nested.status_code == 400, nested.text
    assert "nested too deeply" in nested.json()["error"]["message"]


# --- output names -----------------------------------------------------------------------------


@pytest.mark.slow
def test_objects_whose_names_used_to_collide_keep_distinct_results(
    serve: Callable[..., ServiceProcess], tmp_path: Path
) -> None:
    store = tmp_path / "buckets"
    service = serve(triggers=[classify_trigger(suffix="")])
    objects = {
        "incoming/x.zip": zip_of({"from-x-zip.jpg": jpeg_bytes(1)}),
        "incoming/x.tar.gz": tar_gz_of({"from-x-tar-gz.jpg": jpeg_bytes(2)}),
        "incoming/a/b.zip": zip_of({"from-a-slash-b.jpg": jpeg_bytes(3)}),
        "incoming/a_b.zip": zip_of({"from-a-underscore-b.jpg": jpeg_bytes(4)}),
    }
    for key, data in objects.items():
        assert service.post_event(notification(put(store, key, data))).status_code == 200
    service.wait_for(lambda: service.count_jobs("finished") == 4, 180, "four jobs")

    stems = {key: key_stem(key, "incoming/") for key in objects}
    assert stems["incoming/x.zip"] == "x" and stems["incoming/a_b.zip"] == "a_b"
    assert results(store) == {
        "x.zip": {"from-x-zip.jpg"},
        f"{stems['incoming/x.tar.gz']}.zip": {"from-x-tar-gz.jpg"},
        "a_b.zip": {"from-a-underscore-b.jpg"},
        f"{stems['incoming/a/b.zip']}.zip": {"from-a-slash-b.jpg"},
    }

    # A new version of an object replaces its own result; it never adds one.
    again = put(store, "incoming/x.tar.gz", tar_gz_of({"second-version.jpg": jpeg_bytes(5)}))
    assert service.post_event(notification(again)).status_code == 200
    service.wait_for(lambda: service.count_jobs("finished") == 5, 120, "the new version's job")
    assert results(store)[f"{stems['incoming/x.tar.gz']}.zip"] == {"second-version.jpg"}
    assert len(results(store)) == 4


# --- hostile names in the CLI -----------------------------------------------------------------


@pytest.mark.slow
def test_markup_and_escape_sequences_in_names_list_fine_in_every_cli_command(
    serve: Callable[..., ServiceProcess], tmp_path: Path
) -> None:
    store = tmp_path / "buckets"
    service = serve(triggers=[classify_trigger()])
    markup_key = "incoming/[/x].zip"
    escape_key = "incoming/\x1b]8;;https://evil.example/\x1b\\click\x1b]8;;\x1b\\\x1b[2J.zip"
    for index, key in enumerate((markup_key, escape_key)):
        record = put(store, key, zip_of({f"{index}.jpg": jpeg_bytes(index)}))
        assert service.post_event(notification(record)).status_code == 200
    service.wait_for(lambda: service.count_jobs("finished") == 2, 120, "both jobs")
    markup_job = next(j for j in service.jobs() if j["name"] == key_stem(markup_key, "incoming/"))

    commands = [
        ("jobs", "list"),
        ("events", "list"),
        ("jobs", "get", markup_job["id"]),
        ("jobs", "logs", markup_job["id"]),
    ] + [("jobs", "get", job["id"]) for job in service.jobs()]
    for command in commands:
        result = cli(service, *command)
        assert result.returncode == 0, f"{command}: {result.stderr}"
        assert "MarkupError" not in result.stderr and "Traceback" not in result.stderr
        assert "\x1b" not in result.stdout + result.stderr, command  # shown as \x1b, inert
    assert "[/x].zip" in cli(service, "events", "list").stdout
    shown = cli(service, "jobs", "get", markup_job["id"]).stdout
    assert "%5B/x%5D.zip" in shown, shown  # the input URI (file URIs are percent-encoded)
    # A job named so through the API shows its name as written.
    named = service.post(
        "/v1/jobs",
        {
            "name": "[/x].zip [bold]",
            "model": {"source_type": "builtin", "source_uri": "efficientnet_lite0"},
            "data": {
                "input_uri": str(store / "data" / markup_key),
                "output_uri": str(tmp_path / "out"),
            },
        },
    )
    service.wait_for(lambda: service.count_jobs("finished") == 3, 120, "the named job")
    for command in (("jobs", "list"), ("jobs", "get", named["id"]), ("jobs", "logs", named["id"])):
        result = cli(service, *command)
        assert result.returncode == 0, f"{command}: {result.stderr}"
        if command[1] != "logs":
            assert "[/x].zip [bold]" in result.stdout, result.stdout
    assert "[/x].zip" in cli(service, "jobs", "logs", named["id"]).stdout  # its input path
    assert "\\x1b]8;;https://evil.example/" in cli(service, "events", "list").stdout


# --- limits before work -----------------------------------------------------------------------


def written_bytes(pid: int) -> int:
    """Bytes the process has written with write() and friends (all its threads)."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise AssertionError("no wchar in /proc/<pid>/io")


@pytest.mark.slow
def test_an_input_larger_than_disk_size_is_refused_before_it_reaches_scratch(
    serve: Callable[..., ServiceProcess], tmp_path: Path
) -> None:
    store = tmp_path / "buckets"
    huge = store / "data" / "incoming" / "huge.zip"
    huge.parent.mkdir(parents=True)
    with huge.open("wb") as file:
        file.truncate(3 * GIB)  # sparse: 3 GiB to copy, no room taken here
    record = record_for("data", "incoming/huge.zip", b"")
    record["s3"]["object"]["size"] = 3 * GIB
    service = serve(triggers=[classify_trigger(max_attempts=3, resources={"disk_size": 1})])
    assert service.process is not None
    before = written_bytes(service.process.pid)

    assert service.post_event(notification(record)).status_code == 200
    service.wait_for(lambda: service.count_jobs("failed") == 1, 120, "the job to fail")

    [job] = service.jobs()
    assert job["attempt"] == 1  # not retried: a new attempt would meet the same bytes
    assert (
        "is 3.00 GiB, more than the job's disk_size of 1 GiB; refused before downloading"
        in (job["reason"])
    )
    assert written_bytes(service.process.pid) - before < 64 * 1024**2  # not 3 GiB to scratch
    lines = [line["line"] for line in service.get(f"/v1/jobs/{job['id']}/logs")["lines"]]
    assert "not retried: a new attempt would meet the same input" in lines


@pytest.mark.slow
def test_an_image_bomb_gets_its_own_error_and_no_other_image_or_job_suffers(
    serve: Callable[..., ServiceProcess], tmp_path: Path
) -> None:
    store = tmp_path / "buckets"
    bomb = bomb_png(tmp_path / "bomb.png")  # 13000×13000, ~0.5 MB
    goods = {f"good-{i}.jpg": jpeg_bytes(i, size=64) for i in range(4)}
    service = serve(triggers=[classify_trigger()])
    with_bomb = put(
        store, "incoming/with-bomb.zip", zip_of({**goods, "bomb.png": bomb.read_bytes()})
    )
    neighbour = put(store, "incoming/neighbour.zip", zip_of(goods))
    assert service.post_event(notification(with_bomb, neighbour)).status_code == 200
    service.wait_for(lambda: service.count_jobs("finished") == 2, 180, "both jobs")

    found = {}
    for name in ("with-bomb.zip", "neighbour.zip"):
        with zipfile.ZipFile(store / "data" / "processed" / name) as archive:
            found[name] = {
                json.loads(archive.read(n))["file"]: json.loads(archive.read(n))
                for n in archive.namelist()
                if n.endswith("_pred.json")
            }
    assert found["with-bomb.zip"]["bomb.png"] == {
        "file": "bomb.png",
        "error": "image is 169 MP, over the 40 MP limit (predictors.max_image_pixels)",
    }
    for name, predictions in found.items():
        good = {f: p for f, p in predictions.items() if f != "bomb.png"}
        assert set(good) == set(goods) and all(len(p["classes"]) == 5 for p in good.values()), name


# --- the data folder --------------------------------------------------------------------------


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.slow
def test_the_data_folder_is_private_and_an_old_one_is_tightened_at_start(
    serve: Callable[..., ServiceProcess], tmp_path: Path
) -> None:
    data_dir = tmp_path / "service"
    data_dir.mkdir(mode=0o755)
    (data_dir / "autoinfer.db").touch(mode=0o644)  # as an earlier version left them
    (data_dir / "gallery").mkdir(mode=0o755)
    os.chmod(data_dir, 0o755)
    store = tmp_path / "buckets"
    service = serve(triggers=[classify_trigger()])
    record = put(store, "incoming/one.zip", zip_of({"1.jpg": jpeg_bytes(1)}))
    assert service.post_event(notification(record)).status_code == 200
    service.wait_for(lambda: service.count_jobs("finished") == 1, 120, "the job")

    assert mode(data_dir) == 0o711  # others may pass through to their scratch, never list
    for name in ("autoinfer.db", "autoinfer.db-wal", "master.key"):
        assert mode(data_dir / name) == 0o600, name
    for name in ("gallery", "cache"):
        assert mode(data_dir / name) == 0o700, name
    assert mode(data_dir / "scratch") == 0o711
    exposed = [
        entry.name
        for entry in os.scandir(data_dir)
        if entry.name not in ("scratch", "environments")
        and stat.S_IMODE(entry.stat(follow_symlinks=False).st_mode) & 0o077
    ]
    assert exposed == []
