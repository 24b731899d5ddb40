"""The CUDA worker's decode stage (`predictors.decode_stage`): decoding on N threads gives what
the serial path gives, file for file and in order, errors included; and where a built-in model
job asking for a GPU runs (`devices.job_device`)."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from autoinfer.errors import ModelError
from autoinfer.predictors.decode_stage import DecodeStage
from autoinfer.predictors.devices import cuda_environment, cuda_problem, job_device
from autoinfer.predictors.images import Preprocessing

PREP = Preprocessing()


def bomb_png(side: int = 20000) -> bytes:
    """A 1-bit PNG of side × side pixels: over the pixel limit, refused from its header."""
    row = b"\x00" + bytes(side // 8)
    data = zlib.compress(row * 16)  # the header is what is read; the data need not be whole
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )


def files(folder: Path, count: int) -> list[str]:
    """`count` files: JPEGs and PNGs of varied sizes, with a broken JPEG, a text file and a
    pixel bomb among them."""
    rng = np.random.default_rng(3)
    paths = []
    for index in range(count):
        path = folder / f"f{index:02d}"
        if index % 7 == 3:
            path = path.with_suffix(".jpg")
            path.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
        elif index % 7 == 5:
            path = path.with_suffix(".png")
            path.write_text("hello")
        elif index == 8:
            path = path.with_suffix(".png")
            path.write_bytes(bomb_png())
        else:
            size = (int(rng.integers(120, 600)), int(rng.integers(120, 600)))
            pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
            kind = "PNG" if index % 2 else "JPEG"
            path = path.with_suffix(".png" if kind == "PNG" else ".jpg")
            buffer = io.BytesIO()
            Image.fromarray(pixels).save(buffer, kind)
            path.write_bytes(buffer.getvalue())
        paths.append(str(path))
    return paths


@pytest.mark.parametrize("threads", [2, 5])
def test_decoding_on_threads_gives_the_serial_records_crops_and_thumbnails_in_order(
    tmp_path: Path, threads: int
) -> None:
    paths = files(tmp_path, 20)
    thumbnails = [index % 3 == 0 for index in range(len(paths))]
    serial = DecodeStage(PREP, 1, max_pixels=50_000_000).decode(paths, thumbnails)
    stage = DecodeStage(PREP, threads, max_pixels=50_000_000)
    try:
        # Two batches in flight, as the CUDA worker holds them: each keeps its own order.
        first = stage.submit(paths, thumbnails)
        second = stage.submit(paths[::-1], thumbnails[::-1])
        parallel, backwards = first(), second()
    finally:
        stage.close()
    assert parallel.records == serial.records
    assert parallel.indexes == serial.indexes
    assert parallel.jpegs == serial.jpegs
    assert all(np.array_equal(a, b) for a, b in zip(parallel.crops, serial.crops, strict=True))
    assert backwards.records == serial.records[::-1]
    # The errors are the files' own, each where its file is.
    errors = {i: r["error"] for i, r in enumerate(serial.records) if "error" in r}
    assert sorted(errors) == [3, 5, 8, 10, 12, 17, 19]
    assert "pixels" in errors[8]
    assert len(serial.crops) == 13 and serial.crops[0].shape == (224, 224, 3)
    assert sum(jpeg is not None for jpeg in serial.jpegs) == sum(
        1 for i in serial.indexes if thumbnails[i]
    )


def test_a_decode_stage_refuses_mismatched_flags_and_zero_threads() -> None:
    with pytest.raises(ValueError, match="at least 1 thread"):
        DecodeStage(PREP, 0)
    with pytest.raises(ValueError, match="2 paths but 1 thumbnail flags"):
        DecodeStage(PREP, 2).submit(["a", "b"], [False])


def test_a_job_asking_for_no_gpu_runs_where_the_pool_says() -> None:
    assert job_device(0, machine_has_gpus=True) == (None, None, False)
    assert job_device(0, machine_has_gpus=False) == (None, None, False)


def test_the_cuda_worker_sees_its_gpu_alone_in_pci_bus_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert cuda_environment(3) == {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": "3"}
    # A service started with some GPUs visible: the index counts among those.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2, MIG-5f1a")
    assert cuda_environment(1) == {"CUDA_VISIBLE_DEVICES": "MIG-5f1a"}
    assert cuda_environment(0, "4,6") == {"CUDA_VISIBLE_DEVICES": "4"}
    with pytest.raises(ModelError, match=r"cuda_device is 2 but this service sees 2 GPU\(s\)"):
        cuda_environment(2)
    with pytest.raises(ModelError, match="sees 0 GPU"):
        cuda_environment(0, "")


@pytest.mark.skipif(cuda_problem() is None, reason="this machine has a CUDA GPU")
def test_a_job_asking_for_a_gpu_without_one_says_why_in_one_line() -> None:
    problem = cuda_problem()
    assert problem is not None
    # No GPUs on the machine: the CPU, as for worker commands, with one line for the log.
    where = job_device(1, machine_has_gpus=False)
    assert where.device == "cpu" and not where.fails
    assert (
        where.note
        == f"gpu_count 1 asked but {problem}: this machine has no GPUs, running on its CPU"
    )
    # GPUs the built-in models cannot use: fails at once, saying why.
    where = job_device(2, machine_has_gpus=True)
    assert where.fails and where.note == f"gpu_count 2 asked but {problem}"
