"""`describe`: a description composed from detections, on the real models' output."""

from __future__ import annotations

import pytest

from executor_service import decoding
from executor_service.description import counted, describe, sentence
from executor_service.models import ModelRegistry
from executor_service.preprocessing import prepare
from inference_common.assets import AssetStore, CompositionSpec
from tests.unit.executor.builders import execution_requested
from tests.unit.executor.conftest import image_bytes
from tests.unit.executor.test_execution import failure_of, run, stored

DESCRIBE = "describe-coco-imagenet"
LIMIT = 50_000_000


@pytest.fixture(scope="module")
def spec(store: AssetStore) -> CompositionSpec:
    (only,) = store.manifest.composition
    assert only.name == DESCRIBE
    return only


def described(registry: ModelRegistry, spec: CompositionSpec, image: str) -> dict:
    """The composition's result from the two real models, as the pipeline makes it."""
    detector, classifier = registry.get(spec.detector), registry.get(spec.classifier)
    data = image_bytes(image)
    boxes = prepare(data, detector, max_pixels=LIMIT)
    detection = decoding.detect(
        detector.run(boxes.tensor), detector, (boxes.width, boxes.height), 0.5
    )
    tensor = prepare(data, classifier, max_pixels=LIMIT).tensor
    classification = decoding.classify(classifier.run(tensor), classifier, 5)
    return describe(spec, detection, classification, 0.5)


@pytest.mark.parametrize(
    ("count", "label", "words"),
    [
        (1, "person", "one person"),
        (7, "person", "seven people"),
        (2, "dog", "two dogs"),
        (3, "wine glass", "three wine glasses"),
        (2, "bus", "two buses"),
        (4, "sandwich", "four sandwiches"),
        (2, "knife", "two knives"),
        (5, "sheep", "five sheep"),
        (1, "skis", "one pair of skis"),
        (2, "scissors", "two pairs of scissors"),
        (1, "tv", "one TV"),
        (2, "tv", "two TVs"),
        (20, "kite", "twenty kites"),
        (21, "cup", "21 cups"),
    ],
)
def test_number_words_and_plurals(count: int, label: str, words: str) -> None:
    assert counted(count, label) == words


def test_one_job_one_completed_event_with_sentence_and_parts(registry: ModelRegistry) -> None:
    """Through the executor's execution path: started, then one completed per the contract."""
    ref, images = stored("kite_and_cold.jpg")
    data = execution_requested(ref, model=DESCRIBE, task="describe")

    ok, events, _ = run(registry, data, images)

    assert ok
    started, completed = events  # validated against openapi/asyncapi.yaml
    assert started["executor"] == completed["executor"]
    result = completed["result"]
    assert result["description"] == "Seven people and three kites (scene: seashore)."
    assert [(o["label"], o["count"]) for o in result["objects"]] == [("person", 7), ("kite", 3)]
    assert result["scene"]["label"].startswith("seashore") and result["scene"]["score"] >= 0.5
    assert len(result["detection"]["detections"]) == 10
    assert result["classification"]["classes"][0] == result["scene"]
    assert result["thresholds"] == {"score_threshold": 0.5, "scene_threshold": 0.5}
    assert result["max_kinds"] == 4
    # Both models ran: each step's time is the sum over the two.
    assert {"fetch_ms", "preprocess_ms", "inference_ms", "postprocess_ms"} <= set(
        completed["timings"]
    )


def test_the_score_threshold_option_reaches_the_detector(registry: ModelRegistry) -> None:
    ref, images = stored("kite_and_cold.jpg")
    options = {"score_threshold": 0.9, "top_k": 2}
    data = execution_requested(ref, model=DESCRIBE, task="describe", options=options)

    _, (_, completed), _ = run(registry, data, images)

    result = completed["result"]
    assert all(d["score"] >= 0.9 for d in result["detection"]["detections"])
    assert sum(o["count"] for o in result["objects"]) < 10
    assert result["thresholds"]["score_threshold"] == 0.9
    assert len(result["classification"]["classes"]) <= 2


def test_kinds_beyond_the_cap_are_other_objects(
    registry: ModelRegistry, spec: CompositionSpec
) -> None:
    # traffic_light.jpg: four traffic lights, three people, one car, one truck.
    capped = spec.model_copy(update={"max_kinds": 2})
    result = described(registry, capped, "traffic_light.jpg")
    assert result["description"] == "Four traffic lights, three people and two other objects."
    assert result["scene"] is None  # its top class scores 0.29, under the 0.5 threshold
    full = described(registry, spec, "traffic_light.jpg")["description"]
    assert full == "Four traffic lights, three people, one car and one truck."


def test_most_numerous_first_and_a_confident_scene(
    registry: ModelRegistry, spec: CompositionSpec
) -> None:
    assert described(registry, spec, "pizza.jpg")["description"] == (
        "Three pizzas and one dining table (scene: pizza)."
    )
    assert described(registry, spec, "pets.jpg")["description"] == (
        "Two dogs (scene: Italian greyhound)."
    )


def test_nothing_found(registry: ModelRegistry, spec: CompositionSpec) -> None:
    result = described(registry, spec, "no_person_96x96_gray.bmp")
    assert result["objects"] == [] and result["scene"] is None  # its best class scores 0.25
    assert result["description"] == "No objects recognised."
    assert sentence([], 4, "seashore") == "No objects recognised (scene: seashore)."


def test_zero_score_classes_are_left_out(registry: ModelRegistry, spec: CompositionSpec) -> None:
    # The classifier is 99.6% sure of the macaw: the rest of its top 5 scores 0.
    classes = described(registry, spec, "parrot.jpg")["classification"]["classes"]
    assert [c["label"] for c in classes] == ["macaw", "lorikeet"]


def test_a_describe_request_names_a_composition(registry: ModelRegistry) -> None:
    ref, images = stored("cat.bmp")
    data = execution_requested(ref, model="ssd-mobilenet-v1-coco-quant", task="describe")
    error = failure_of(registry, data, images)
    assert error["code"] == "unknown_model" and DESCRIBE in error["message"]
