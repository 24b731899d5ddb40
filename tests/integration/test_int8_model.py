"""`efficientnet_lite0_int8`: made once from the fp32 export, cached, its own checksum, and still
right about the seed images."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np

from autoinfer.predictors.images import decode_image
from autoinfer.predictors.zoo import load_classifier
from tests.conftest import SEED_TRUTH, RunningService
from tests.support.results import read_output

INT8 = "efficientnet_lite0_int8"


def test_int8_model_keeps_every_seed_images_true_class_in_its_top_5(
    model_cache: Path, seed_images: Path
) -> None:
    int8 = load_classifier(INT8, model_cache, threads=1)
    fp32 = load_classifier("efficientnet_lite0", model_cache, threads=1)
    prep = int8.preprocessing
    names = sorted(SEED_TRUTH)
    crops = np.stack([decode_image(seed_images / n, prep.size, prep.resize) for n in names])
    for name, row, reference in zip(
        names, int8.predict_crops(crops), fp32.predict_crops(crops), strict=True
    ):
        top5 = [c["id"] for c in int8.top5(row)]
        assert SEED_TRUTH[name][0] in top5, (name, int8.top5(row))
        assert int(np.argmax(row)) == int(np.argmax(reference)), name
    # Made once, cached beside the fp32 export, and quantized for real (int8 weights).
    [made] = (model_cache / "models").glob("efficientnet_lite0_int8-*.onnx")
    stamp = made.stat().st_mtime_ns
    again = load_classifier(INT8, model_cache, threads=1)
    assert made.stat().st_mtime_ns == stamp
    assert again.info["weights_sha256"] == hashlib.sha256(made.read_bytes()).hexdigest()
    assert again.info["weights_sha256"] != fp32.info["weights_sha256"]
    assert (
        made.stat().st_size
        < 0.4 * next((model_cache / "models").glob("efficientnet_lite0-*.onnx")).stat().st_size
    )


def test_a_job_selects_the_int8_model_by_its_name(
    api: RunningService, seed_zip: Path, tmp_path: Path
) -> None:
    client = api.client()
    job = client.jobs.create(
        name="int8",
        type="inference",
        data={"input_uri": str(seed_zip), "output_uri": str(tmp_path / "out")},
        model={"source_type": "builtin", "source_uri": INT8},
    )
    deadline = time.monotonic() + 300
    while job.status not in ("finished", "failed", "stopped"):
        assert time.monotonic() < deadline, f"job did not end; last status {job.status}"
        time.sleep(0.1)
        job.refresh()
    assert job.status == "finished", job.dict["reason"]
    outputs = read_output(tmp_path / "out" / "int8.zip")
    manifest = outputs["manifest.json"]
    assert manifest["model"]["name"] == INT8
    assert manifest["model"] == job.dict["model_info"]
    for name, (wnid, _) in SEED_TRUTH.items():
        record = outputs[f"{Path(name).stem}_pred.json"]
        assert wnid in [c["id"] for c in record["classes"]], record
