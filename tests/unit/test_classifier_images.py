"""Finding and decoding images for the built-in classifier (no model needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from autoinfer.predictors import prediction_file_name, prediction_paths
from autoinfer.predictors.images import (
    UnreadableImage,
    decode_image,
    find_images,
    load_image,
    normalize,
)

SWING = "ILSVRC2012_val_00002399.JPEG"


def _touch_image(path: Path, size: tuple[int, int] = (40, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF"}.get(
        path.suffix.lower(), path.suffix.lstrip(".").upper()
    )
    Image.new("RGB", size, (200, 30, 30)).save(path, format=fmt)
    return path


def reference_crop(path: Path) -> np.ndarray:
    """torchvision's Resize(256) + CenterCrop(224) on a full decode, written out by hand."""
    image = Image.open(path).convert("RGB")
    width, height = image.size
    size = (256, int(256 * height / width)) if width <= height else (int(256 * width / height), 256)
    image = image.resize(size, Image.Resampling.BILINEAR)
    left, top = round((size[0] - 224) / 2), round((size[1] - 224) / 2)
    return np.asarray(image.crop((left, top, left + 224, top + 224)))


def test_find_images_is_recursive_sorted_and_ignores_extension_case(tmp_path: Path) -> None:
    for name in ["b.JPG", "a.png", "sub/c.JpEg", "sub/deeper/d.WEBP", "e.Tiff", "f.gif", "g.bmp"]:
        _touch_image(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not an image")
    found = [path.relative_to(tmp_path).as_posix() for path in find_images(tmp_path)]
    assert found == [
        "a.png",
        "b.JPG",
        "e.Tiff",
        "f.gif",
        "g.bmp",
        "sub/c.JpEg",
        "sub/deeper/d.WEBP",
    ]


def test_find_images_skips_hidden_files_and_macosx_forks(tmp_path: Path) -> None:
    _touch_image(tmp_path / "kept.jpg")
    _touch_image(tmp_path / ".hidden.jpg")
    _touch_image(tmp_path / ".cache" / "inside.jpg")
    (tmp_path / "__MACOSX").mkdir()
    (tmp_path / "__MACOSX" / "._kept.jpg").write_bytes(b"\x00\x05\x16\x07resource fork")
    assert find_images(tmp_path) == [tmp_path / "kept.jpg"]


def test_decode_matches_a_full_decode_resize_and_centre_crop(seed_images: Path) -> None:
    crop = decode_image(seed_images / SWING)
    assert crop.shape == (224, 224, 3) and crop.dtype == np.uint8
    assert np.array_equal(crop, reference_crop(seed_images / SWING))


def test_reduced_jpeg_decoding_of_a_big_photo_stays_close_to_a_full_decode(
    seed_images: Path, tmp_path: Path
) -> None:
    big = tmp_path / "big.jpg"
    Image.open(seed_images / SWING).resize((4000, 3000), Image.Resampling.BICUBIC).save(big)
    difference = np.abs(decode_image(big).astype(int) - reference_crop(big).astype(int))
    assert difference.mean() < 2.0


def test_load_image_is_a_normalised_chw_float_tensor(seed_images: Path) -> None:
    tensor = load_image(seed_images / SWING)
    assert tensor.shape == (3, 224, 224) and tensor.dtype == np.float32
    crop = reference_crop(seed_images / SWING).astype(np.float64) / 255
    expected = (crop - (0.485, 0.456, 0.406)) / (0.229, 0.224, 0.225)
    assert np.allclose(tensor, expected.transpose(2, 0, 1), atol=1e-5)


def test_normalize_batches_keep_their_order() -> None:
    crops = np.stack([np.full((8, 8, 3), value, dtype=np.uint8) for value in (0, 255)])
    batch = normalize(crops)
    assert batch.shape == (2, 3, 8, 8)
    assert batch[0].max() < 0 < batch[1].min()


@pytest.mark.parametrize(
    ("name", "payload", "reason"),
    [
        ("junk.jpg", b"this is not an image", "cannot identify image file"),
        ("empty.png", b"", "cannot identify image file"),
    ],
)
def test_undecodable_files_raise_with_a_short_reason(
    tmp_path: Path, name: str, payload: bytes, reason: str
) -> None:
    path = tmp_path / name
    path.write_bytes(payload)
    with pytest.raises(UnreadableImage) as raised:
        decode_image(path)
    assert raised.value.reason == reason
    assert str(raised.value) == f"{path}: {reason}"


def test_a_truncated_jpeg_is_reported_as_truncated(seed_images: Path, tmp_path: Path) -> None:
    data = (seed_images / SWING).read_bytes()
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UnreadableImage) as raised:
        decode_image(path)
    assert raised.value.reason == "image file is truncated"


@pytest.mark.parametrize("mode", ["P", "RGBA", "LA", "CMYK", "L", "1", "I;16"])
def test_every_common_pixel_mode_becomes_an_rgb_crop(tmp_path: Path, mode: str) -> None:
    source = Image.linear_gradient("L").resize((320, 240))
    if mode == "I;16":
        image = Image.fromarray(np.asarray(source).astype(np.uint16) * 257)
        path = tmp_path / "grey16.png"
    else:
        image = source.convert(mode)
        path = tmp_path / f"image.{'jpg' if mode == 'CMYK' else 'png'}"
    image.save(path)
    crop = decode_image(path)
    assert crop.shape == (224, 224, 3)
    if mode == "I;16":  # scaled down, not clipped to white
        assert 60 < crop.mean() < 200


def test_transparent_pixels_are_composited_on_white(tmp_path: Path) -> None:
    path = tmp_path / "clear.png"
    Image.new("RGBA", (300, 300), (0, 0, 0, 0)).save(path)
    assert decode_image(path).min() == 255


def test_an_animated_gif_is_classified_by_its_first_frame(tmp_path: Path) -> None:
    path = tmp_path / "anim.gif"
    first, second = Image.new("RGB", (300, 300), "red"), Image.new("RGB", (300, 300), "blue")
    first.save(path, save_all=True, append_images=[second])
    red, _green, blue = decode_image(path).reshape(-1, 3).mean(axis=0)
    assert red > 200 and blue < 50


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    image = Image.new("RGB", (400, 300), "white")
    image.paste((0, 0, 0), (0, 0, 400, 150))  # black on top, as stored
    exif = Image.Exif()
    exif[0x0112] = 3  # rotated 180°: black ends up at the bottom when shown
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif)
    crop = decode_image(path).astype(int)
    assert crop[:50].mean() > 200 and crop[-50:].mean() < 50


def test_prediction_file_name_is_the_stem_with_pred_json() -> None:
    assert prediction_file_name(Path("photos/ILSVRC2012_val_00002399.JPEG")) == (
        "ILSVRC2012_val_00002399_pred.json"
    )


def test_prediction_paths_are_flat_unless_names_collide(tmp_path: Path) -> None:
    images = [
        tmp_path / "top.jpg",
        tmp_path / "a" / "only.jpg",
        tmp_path / "a" / "cat.jpg",
        tmp_path / "b" / "Cat.png",
        tmp_path / "c" / "dog.jpg",
        tmp_path / "c" / "dog.png",
    ]
    assert prediction_paths(images, tmp_path) == [
        "top_pred.json",
        "only_pred.json",
        "a/cat_pred.json",
        "b/Cat_pred.json",
        "c/dog.jpg_pred.json",
        "c/dog.png_pred.json",
    ]
