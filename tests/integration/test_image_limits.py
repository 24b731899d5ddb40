"""Image bombs in the warm pool: refused from the header, or bounded by the worker's memory,
and never at the cost of the other images of the batch."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from autoinfer.predictors import PredictorPool
from autoinfer.predictors.images import UnreadableImage, decode_image
from tests.support.bombs import bomb_png


@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bomb_png(tmp_path_factory.mktemp("bomb") / "bomb.png")


@pytest.fixture
def images_and_bomb(seed_images: Path, bomb: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    shutil.copytree(seed_images, folder)
    shutil.copy(bomb, folder / "bomb.png")
    return folder


def records(output: Path) -> dict[str, dict]:
    return {
        json.loads(f.read_text())["file"]: json.loads(f.read_text())
        for f in output.glob("*_pred.json")
    }


def test_the_pixel_cap_is_read_from_the_header_before_decoding(bomb: Path) -> None:
    with pytest.raises(UnreadableImage) as raised:
        decode_image(bomb, max_pixels=40_000_000)
    assert raised.value.reason == (
        "image is 169 MP, over the 40 MP limit (predictors.max_image_pixels)"
    )


def test_a_jpeg_is_measured_at_its_draft_scale(tmp_path: Path) -> None:
    photo = tmp_path / "big.jpg"
    Image.new("RGB", (4000, 3000), (10, 200, 30)).save(photo, quality=50)  # 12 MP
    assert decode_image(photo, max_pixels=2_000_000).shape == (224, 224, 3)  # drafted to 1/8


def test_a_bomb_beside_good_images_gets_its_own_error_and_the_others_get_classes(
    model_cache: Path, images_and_bomb: Path, tmp_path: Path
) -> None:
    with PredictorPool(model_cache, workers=1, batch_size=16) as pool:
        manifest = pool.classify("efficientnet_lite0", images_and_bomb, tmp_path / "out")
        assert pool.stats()["worker_crashes"] == 0
    found = records(tmp_path / "out")
    assert found["bomb.png"]["error"] == (
        "image is 169 MP, over the 40 MP limit (predictors.max_image_pixels)"
    )
    assert all("classes" in r for name, r in found.items() if name != "bomb.png")
    assert len(found) == 6 and manifest["errors"] == 1


def test_past_the_worker_memory_bound_a_decode_fails_alone(
    model_cache: Path, images_and_bomb: Path, tmp_path: Path
) -> None:
    # Cap raised above the bomb: only the memory bound stands between it and the worker.
    with PredictorPool(
        model_cache, workers=1, batch_size=16, max_image_pixels=200_000_000, worker_memory_mb=600
    ) as pool:
        pool.classify("efficientnet_lite0", images_and_bomb, tmp_path / "out")
        assert pool.stats()["worker_crashes"] == 0
    found = records(tmp_path / "out")
    assert found["bomb.png"] == {
        "file": "bomb.png",
        "error": "image is too large to decode within the worker's memory limit",
    }
    assert sum("classes" in r for r in found.values()) == 5
