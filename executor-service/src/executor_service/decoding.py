"""Raw output tensors to the `result` of `job.completed.v1` (openapi/asyncapi.yaml)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from executor_service.models import LoadedModel, TensorInfo

Json = dict[str, Any]
_DIGITS = 6  # scores and boxes in events: enough precision, compact JSON


def dequantize(values: npt.NDArray[Any], tensor: TensorInfo) -> npt.NDArray[np.float64]:
    """Real values of an output: (q - zero_point) * scale, or the floats themselves."""
    real = values.astype(np.float64)
    return (real - tensor.zero_point) * tensor.scale if tensor.quantized else real


def label_of(index: int, labels: Sequence[str], offset: int) -> str:
    """Output index i is label i + offset; an index the label list lacks keeps its number."""
    position = index + offset
    return labels[position] if 0 <= position < len(labels) else str(index)


def classify(outputs: Sequence[npt.NDArray[Any]], model: LoadedModel, top_k: int) -> Json:
    probabilities = dequantize(outputs[0], model.outputs[0]).reshape(-1)
    return {
        "task": "classification",
        "classes": top_classes(probabilities, model.labels, model.spec.label_offset, top_k),
    }


def top_classes(
    probabilities: npt.NDArray[np.float64], labels: Sequence[str], offset: int, k: int
) -> list[Json]:
    """The k best, best first; ties keep the lower index first (a stable order)."""
    order = np.argsort(-probabilities, kind="stable")[:k]
    return [
        {
            "index": int(i),
            "label": label_of(int(i), labels, offset),
            "score": _score(probabilities[i]),
        }
        for i in order
    ]


def detect(
    outputs: Sequence[npt.NDArray[Any]],
    model: LoadedModel,
    image_size: tuple[int, int],
    threshold: float,
) -> Json:
    """SSD post-processing outputs (boxes, classes, scores, count) to boxes above threshold.

    Boxes are [ymin, xmin, ymax, xmax] normalised to the whole image; the model stretched the
    image, so they map straight onto the upright original of `image_size` (width, height).
    """
    boxes, classes, scores, count = (
        dequantize(values, tensor).reshape(-1)
        for values, tensor in zip(outputs, model.outputs, strict=True)
    )
    n = min(int(count[0]), scores.size)
    width, height = image_size
    found = [
        detection(int(classes[i]), scores[i], boxes[4 * i : 4 * i + 4], model, image_size)
        for i in range(n)
        if scores[i] >= threshold
    ]
    found.sort(key=lambda d: -float(d["score"]))
    return {
        "task": "object_detection",
        "image_width": width,
        "image_height": height,
        "detections": found,
    }


def detection(
    class_id: int,
    score: float,
    box: npt.NDArray[np.float64],
    model: LoadedModel,
    image_size: tuple[int, int],
) -> Json:
    ymin, xmin, ymax, xmax = clip_box(box)
    return {
        "index": class_id,
        "label": label_of(class_id, model.labels, model.spec.label_offset),
        "score": _score(score),
        "box": {
            "ymin": round(ymin, _DIGITS),
            "xmin": round(xmin, _DIGITS),
            "ymax": round(ymax, _DIGITS),
            "xmax": round(xmax, _DIGITS),
        },
        "box_pixels": pixel_box((ymin, xmin, ymax, xmax), *image_size),
    }


def clip_box(box: npt.NDArray[np.float64]) -> tuple[float, float, float, float]:
    """The detector's boxes stray slightly outside the image (-0.01, 1.02 seen)."""
    ymin, xmin, ymax, xmax = (float(v) for v in np.clip(box, 0.0, 1.0))
    return ymin, xmin, ymax, xmax


def pixel_box(box: tuple[float, float, float, float], width: int, height: int) -> Json:
    ymin, xmin, ymax, xmax = box
    return {
        "left": round(xmin * width),
        "top": round(ymin * height),
        "right": round(xmax * width),
        "bottom": round(ymax * height),
    }


def _score(value: float | np.floating[Any]) -> float:
    return round(min(max(float(value), 0.0), 1.0), _DIGITS)
