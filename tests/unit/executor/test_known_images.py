"""Right answers on known photos, through the executor's own bytes-to-result path."""

from __future__ import annotations

from collections import Counter

from executor_service import decoding
from executor_service.models import ModelRegistry
from executor_service.preprocessing import prepare
from tests.unit.executor.conftest import image_bytes

LIMIT = 50_000_000


def classify(registry: ModelRegistry, name: str, k: int = 3) -> list[dict]:
    model = registry.get("mobilenet-v2-imagenet-quant")
    prepared = prepare(image_bytes(name), model, max_pixels=LIMIT)
    return decoding.classify(model.run(prepared.tensor), model, k)["classes"]


def test_cat_is_a_cat(registry: ModelRegistry) -> None:
    best = classify(registry, "cat.bmp")[0]
    assert best["label"] in {"Egyptian cat", "tabby, tabby cat"}
    assert best["index"] in {286, 282}
    assert best["score"] > 0.5


def test_parrot_is_a_macaw(registry: ModelRegistry) -> None:
    best = classify(registry, "parrot.jpg")[0]
    assert (best["index"], best["label"]) == (89, "macaw")
    assert best["score"] > 0.9


def test_grayscale_jpeg_works_for_an_rgb_model(registry: ModelRegistry) -> None:
    assert classify(registry, "umbrella.jpg")[0]["label"] == "umbrella"


def test_kites_and_people_are_found(registry: ModelRegistry) -> None:
    model = registry.get("ssd-mobilenet-v1-coco-quant")
    prepared = prepare(image_bytes("kite_and_cold.jpg"), model, max_pixels=LIMIT)
    result = decoding.detect(
        model.run(prepared.tensor), model, (prepared.width, prepared.height), 0.5
    )
    counts = Counter(d["label"] for d in result["detections"])
    assert counts["person"] >= 5
    assert counts["kite"] >= 2
    assert (result["image_width"], result["image_height"]) == (1352, 900)
    for found in result["detections"]:
        box, pixels = found["box"], found["box_pixels"]
        assert 0 <= box["xmin"] <= box["xmax"] <= 1 and 0 <= box["ymin"] <= box["ymax"] <= 1
        assert 0 <= pixels["left"] <= pixels["right"] <= 1352
        assert 0 <= pixels["top"] <= pixels["bottom"] <= 900


def test_detector_box_lands_on_the_dogs(registry: ModelRegistry) -> None:
    model = registry.get("ssd-mobilenet-v1-coco-quant")
    prepared = prepare(image_bytes("pets.jpg"), model, max_pixels=LIMIT)
    found = decoding.detect(model.run(prepared.tensor), model, (512, 430), 0.5)["detections"]
    assert [d["label"] for d in found] == ["dog", "dog"]
    # MODEL.md: dog 0.816 at [0.11, 0.24, 0.68, 0.49] (ymin, xmin, ymax, xmax).
    box = found[0]["box"]
    assert abs(box["ymin"] - 0.11) < 0.03 and abs(box["xmin"] - 0.24) < 0.03
    assert abs(box["ymax"] - 0.68) < 0.03 and abs(box["xmax"] - 0.49) < 0.03
