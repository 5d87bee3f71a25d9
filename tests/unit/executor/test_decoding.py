"""Output tensors to results: dequantization, top-k, labels, boxes."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from executor_service.decoding import (
    classify,
    clip_box,
    dequantize,
    detect,
    label_of,
    pixel_box,
    top_classes,
)
from executor_service.models import TensorInfo


def tensor(shape, dtype, scale=0.0, zero_point=0) -> TensorInfo:
    return TensorInfo(0, "out", shape, np.dtype(dtype), scale, zero_point)


def test_dequantize_per_model_card() -> None:
    # uint8 softmax: p = q/256; int8 softmax: p = (q + 128)/256; float: as is.
    uint8 = dequantize(np.array([0, 128, 255], np.uint8), tensor((3,), np.uint8, 1 / 256, 0))
    int8 = dequantize(np.array([-128, 0, 127], np.int8), tensor((3,), np.int8, 1 / 256, -128))
    floats = dequantize(np.array([0.25, 0.5], np.float32), tensor((2,), np.float32))
    np.testing.assert_allclose(uint8, [0, 0.5, 255 / 256])
    np.testing.assert_allclose(int8, [0, 0.5, 255 / 256])
    np.testing.assert_allclose(floats, [0.25, 0.5])


def test_top_classes_best_first_with_stable_ties() -> None:
    probabilities = np.array([0.1, 0.3, 0.05, 0.3, 0.25])
    labels = ["a", "b", "c", "d", "e"]
    classes = top_classes(probabilities, labels, 0, 3)
    assert [(c["index"], c["label"], c["score"]) for c in classes] == [
        (1, "b", 0.3),
        (3, "d", 0.3),
        (4, "e", 0.25),
    ]


def test_top_k_larger_than_the_classes_returns_them_all() -> None:
    assert len(top_classes(np.array([0.5, 0.5]), ["x", "y"], 0, 10)) == 2


def test_label_offset_and_missing_labels() -> None:
    labels = ["???", "person", "bicycle"]
    assert label_of(0, labels, 1) == "person"  # upstream labelmap.txt: offset +1
    assert label_of(1, labels, 1) == "bicycle"
    assert label_of(2, labels, 1) == "2"  # no such line: the index stands in
    assert label_of(0, labels, -1) == "0"


def test_classify_uses_the_output_quantization() -> None:
    model = SimpleNamespace(
        outputs=(tensor((1, 4), np.int8, 1 / 256, -128),),
        labels=("zero", "one", "two", "three"),
        spec=SimpleNamespace(label_offset=0),
    )
    result = classify([np.array([[-128, 100, -28, 127]], np.int8)], model, 2)
    assert result == {
        "task": "classification",
        "classes": [
            {"index": 3, "label": "three", "score": pytest.approx(255 / 256, abs=1e-6)},
            {"index": 1, "label": "one", "score": pytest.approx(228 / 256, abs=1e-6)},
        ],
    }


def test_boxes_are_clipped_to_the_image() -> None:
    assert clip_box(np.array([-0.01, 0.2, 1.02, 0.8])) == (0.0, 0.2, 1.0, 0.8)
    assert pixel_box((0.0, 0.25, 1.0, 0.75), width=640, height=480) == {
        "left": 160,
        "top": 0,
        "right": 480,
        "bottom": 480,
    }


def detector(labels=("person", "bicycle", "car")) -> SimpleNamespace:
    return SimpleNamespace(
        outputs=(
            tensor((1, 4, 4), np.float32),
            tensor((1, 4), np.float32),
            tensor((1, 4), np.float32),
            tensor((1,), np.float32),
        ),
        labels=labels,
        spec=SimpleNamespace(label_offset=0),
    )


def test_detect_thresholds_counts_sorts_and_maps_boxes() -> None:
    boxes = np.array(
        [
            [
                [0.1, 0.1, 0.5, 0.5],
                [-0.05, 0.5, 0.5, 1.03],
                [0.2, 0.2, 0.3, 0.3],
                [0.0, 0.0, 1.0, 1.0],
            ]
        ],
        np.float32,
    )
    classes = np.array([[2, 0, 1, 0]], np.float32)
    scores = np.array([[0.6, 0.9, 0.4, 0.95]], np.float32)
    count = np.array([3], np.float32)  # the fourth slot is padding, whatever its score

    result = detect([boxes, classes, scores, count], detector(), (200, 100), threshold=0.5)

    assert result["image_width"] == 200 and result["image_height"] == 100
    found = result["detections"]
    assert [(d["label"], d["index"]) for d in found] == [("person", 0), ("car", 2)]
    assert found[0]["score"] == pytest.approx(0.9)
    assert found[0]["box"] == {"ymin": 0.0, "xmin": 0.5, "ymax": 0.5, "xmax": 1.0}
    assert found[0]["box_pixels"] == {"left": 100, "top": 0, "right": 200, "bottom": 50}
    assert found[1]["box_pixels"] == {"left": 20, "top": 10, "right": 100, "bottom": 50}


def test_threshold_zero_keeps_every_counted_detection() -> None:
    outputs = [
        np.zeros((1, 4, 4), np.float32),
        np.zeros((1, 4), np.float32),
        np.array([[0.3, 0.2, 0.1, 0.0]], np.float32),
        np.array([4], np.float32),
    ]
    assert len(detect(outputs, detector(), (10, 10), threshold=0.0)["detections"]) == 4
