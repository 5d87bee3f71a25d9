import gzip
import io
import struct
from pathlib import Path

import pytest
from PIL import Image

from inference_client import Model
from inference_common.assets import AssetStore, load_manifest
from inference_common.mnist import MNIST_IMAGES, MNIST_LABELS
from simulator.images import (
    NoImages,
    is_digit_model,
    load_directory,
    mnist_digits,
    select_images,
)

ROOT = Path(__file__).parents[3]
MANIFEST = load_manifest(ROOT / "assets" / "manifest.toml")
IMAGENET = Model("mobilenet-v2-imagenet-quant", "", "classification", label_count=1001)
COCO = Model("ssd-mobilenet-v1-coco-quant", "", "object_detection", label_count=90)
MNIST = Model("mnist-lstm-tflm-int8", "", "classification", label_count=10)


def write_mnist(cache: Path, digits: list[int]) -> None:
    """A tiny IDX pair: image i is filled with the grey value 10 * (i + 1)."""
    rows = cols = 28
    pixels = b"".join(bytes([10 * (i + 1)]) * rows * cols for i in range(len(digits)))
    images = struct.pack(">IIII", 2051, len(digits), rows, cols) + pixels
    labels = struct.pack(">II", 2049, len(digits)) + bytes(digits)
    (cache / MNIST_IMAGES).parent.mkdir(parents=True, exist_ok=True)
    (cache / MNIST_IMAGES).write_bytes(gzip.compress(images))
    (cache / MNIST_LABELS).write_bytes(gzip.compress(labels))


def fill_cache(cache: Path) -> None:
    for asset in MANIFEST.images():
        (cache / asset.path).parent.mkdir(parents=True, exist_ok=True)
        (cache / asset.path).write_bytes(b"photo:" + asset.path.encode())
    write_mnist(cache, [7, 2, 1])


def test_the_manifest_decides_which_models_read_digits() -> None:
    assert is_digit_model(MNIST, MANIFEST)
    assert not is_digit_model(IMAGENET, MANIFEST)
    assert not is_digit_model(COCO, MANIFEST)
    # A model the manifest does not know: ten classes is the tell.
    unknown_digits = Model("someone-elses-mnist", "", "classification", label_count=10)
    assert is_digit_model(unknown_digits, MANIFEST)
    assert not is_digit_model(Model("x", "", "object_detection", label_count=10), None)


def test_every_manifest_model_gets_images_that_suit_it(tmp_path: Path) -> None:
    fill_cache(tmp_path)
    models = [Model(m.name, m.title, m.task) for m in MANIFEST.model]
    samples = select_images(models, AssetStore(MANIFEST, tmp_path))
    photo_names = {Path(a.path).name for a in MANIFEST.images()}
    for model in models:
        names = {image.name for image in samples.for_model(model.name)}
        if model.name.startswith("mnist"):
            assert names == {
                "mnist-0000-digit-7.png",
                "mnist-0001-digit-2.png",
                "mnist-0002-digit-1.png",
            }
        else:
            assert names == photo_names
    cat = next(i for i in samples.for_model(IMAGENET.name) if i.name == "cat.bmp")
    assert cat.media_type == "image/bmp"
    assert cat.data == b"photo:images/cat.bmp"


def test_mnist_digits_are_real_pngs_of_the_right_pixels(tmp_path: Path) -> None:
    write_mnist(tmp_path, [7, 2, 1])
    digits = mnist_digits(tmp_path / MNIST_IMAGES, tmp_path / MNIST_LABELS, count=2)
    assert [d.name for d in digits] == ["mnist-0000-digit-7.png", "mnist-0001-digit-2.png"]
    with Image.open(io.BytesIO(digits[1].data)) as image:
        assert (image.format, image.mode, image.size) == ("PNG", "L", (28, 28))
        assert image.getextrema() == (20, 20)
    assert all(d.media_type == "image/png" for d in digits)


def test_mnist_without_labels_still_works(tmp_path: Path) -> None:
    write_mnist(tmp_path, [3])
    assert [d.name for d in mnist_digits(tmp_path / MNIST_IMAGES, None, 5)] == ["mnist-0000.png"]


def test_a_photos_only_run_does_not_need_mnist(tmp_path: Path) -> None:
    fill_cache(tmp_path)
    (tmp_path / MNIST_IMAGES).unlink()
    samples = select_images([IMAGENET, COCO], AssetStore(MANIFEST, tmp_path))
    assert len(samples.for_model(COCO.name)) == len(MANIFEST.images())
    with pytest.raises(NoImages, match="inference-assets fetch"):
        select_images([MNIST], AssetStore(MANIFEST, tmp_path))


def test_missing_photos_say_how_to_fetch_them(tmp_path: Path) -> None:
    with pytest.raises(NoImages, match="is not fetched yet: run `inference-assets fetch`"):
        select_images([IMAGENET], AssetStore(MANIFEST, tmp_path))


def test_a_directory_replaces_the_samples_for_every_model(tmp_path: Path) -> None:
    (tmp_path / "b.PNG").write_bytes(b"png")
    (tmp_path / "a.jpg").write_bytes(b"jpg")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "sub.jpg").mkdir()
    samples = select_images([IMAGENET, MNIST], None, tmp_path)
    for model in (IMAGENET, MNIST):
        images = samples.for_model(model.name)
        assert [(i.name, i.media_type) for i in images] == [
            ("a.jpg", "image/jpeg"),
            ("b.PNG", "image/png"),
        ]


def test_a_directory_without_images_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(NoImages, match="no images"):
        load_directory(tmp_path)
    with pytest.raises(NoImages, match="not a directory"):
        load_directory(tmp_path / "missing")
