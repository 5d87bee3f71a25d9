"""The manifest's models in LiteRT: what their tensors say, state, unknown names."""

from __future__ import annotations

import numpy as np
import pytest

from executor_service.errors import ErrorCode, JobFailure
from executor_service.models import ModelRegistry, load_model
from inference_common.assets import AssetStore


def test_every_manifest_model_is_served(registry: ModelRegistry, store: AssetStore) -> None:
    assert registry.names() == sorted(spec.name for spec in store.manifest.model)


@pytest.mark.parametrize(
    ("name", "size", "channels", "dtype", "quantization", "labels"),
    [
        ("mobilenet-v2-imagenet-quant", (224, 224), 3, np.uint8, (0.0078125, 128), 1001),
        ("ssd-mobilenet-v1-coco-quant", (300, 300), 3, np.uint8, (0.0078125, 128), 90),
        ("mnist-lstm-tflm-float32", (28, 28), 1, np.float32, (0.0, 0), 10),
        ("mnist-lstm-tflm-int8", (28, 28), 1, np.int8, (1 / 255, -128), 10),
        ("mnist-lstm-coral-uint8", (28, 28), 1, np.uint8, (1 / 255, 0), 10),
    ],
)
def test_input_is_read_from_the_tensor(
    registry: ModelRegistry, *, name, size, channels, dtype, quantization, labels
) -> None:
    model = registry.get(name)
    assert model.input.size == size
    assert model.input.channels == channels
    assert model.input.tensor.dtype == dtype
    assert (model.input.tensor.scale, model.input.tensor.zero_point) == pytest.approx(quantization)
    assert len(model.labels) == labels


def test_labels_come_from_the_file_or_the_manifest(registry: ModelRegistry) -> None:
    imagenet = registry.get("mobilenet-v2-imagenet-quant").labels
    assert (imagenet[0], imagenet[286], imagenet[89]) == ("background", "Egyptian cat", "macaw")
    coco = registry.get("ssd-mobilenet-v1-coco-quant").labels
    assert (coco[0], coco[37]) == ("person", "kite")
    assert registry.get("mnist-lstm-coral-uint8").labels == tuple("0123456789")


def test_unknown_model_is_a_job_failure(registry: ModelRegistry) -> None:
    with pytest.raises(JobFailure) as caught:
        registry.get("resnet-9000")
    assert caught.value.code is ErrorCode.UNKNOWN_MODEL
    assert caught.value.retryable is False
    assert "mobilenet-v2-imagenet-quant" in caught.value.message


@pytest.mark.parametrize(
    "name", ["mnist-lstm-tflm-float32", "mnist-lstm-tflm-int8", "mnist-lstm-coral-uint8"]
)
def test_stateful_models_answer_the_same_after_other_inputs(store: AssetStore, name: str) -> None:
    # A fresh interpreter per model: the answer must not depend on the previous request.
    model = load_model(store.manifest.model_spec(name), store, threads=1)
    rng = np.random.default_rng(3)
    info = model.input.tensor
    first = rng.integers(0, 255, info.shape).astype(info.dtype)
    other = rng.integers(0, 255, info.shape).astype(info.dtype)
    before = model.run(first)[0].copy()
    model.run(other)
    model.run(other)
    np.testing.assert_array_equal(model.run(first)[0], before)


def test_wrong_tensor_shape_is_a_model_error(registry: ModelRegistry) -> None:
    model = registry.get("mnist-lstm-tflm-float32")
    with pytest.raises(JobFailure) as caught:
        model.run(np.zeros((1, 27, 28), np.float32))
    assert caught.value.code is ErrorCode.MODEL_ERROR
