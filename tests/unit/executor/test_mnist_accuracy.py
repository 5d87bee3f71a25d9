"""MNIST t10k through the executor's own path must score exactly what the model cards say.

Each 28x28 test image is encoded as a PNG and goes through `prepare()` (decode, colour,
resize, value mapping) and `LoadedModel.run()` (with its state reset), as job images do.
"""

from __future__ import annotations

import gzip
import io

import numpy as np
import pytest
from PIL import Image

from executor_service.models import ModelRegistry
from executor_service.preprocessing import prepare
from tests.unit.executor.conftest import ASSETS

MNIST = ASSETS / "datasets" / "mnist"


@pytest.fixture(scope="module")
def t10k() -> tuple[list[bytes], np.ndarray]:
    images = gzip.decompress((MNIST / "t10k-images-idx3-ubyte.gz").read_bytes())
    labels = gzip.decompress((MNIST / "t10k-labels-idx1-ubyte.gz").read_bytes())
    pixels = np.frombuffer(images, np.uint8, offset=16).reshape(-1, 28, 28)
    digits = np.frombuffer(labels, np.uint8, offset=8)
    assert len(pixels) == len(digits) == 10_000
    return [_png(p) for p in pixels], digits


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("name", "correct"),
    [
        ("mnist-lstm-tflm-float32", 9853),
        ("mnist-lstm-tflm-int8", 9849),
        ("mnist-lstm-coral-uint8", 9793),
    ],
)
def test_accuracy_equals_the_model_card(
    registry: ModelRegistry, t10k: tuple[list[bytes], np.ndarray], name: str, correct: int
) -> None:
    model = registry.get(name)
    pngs, digits = t10k
    predicted = [
        int(np.argmax(model.run(prepare(png, model, max_pixels=784).tensor)[0])) for png in pngs
    ]
    assert int((np.array(predicted) == digits).sum()) == correct
