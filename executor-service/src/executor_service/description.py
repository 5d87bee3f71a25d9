"""The `describe` task's result: a description composed from detections, not a neural caption.

The detector's objects are counted by label and said in words ("Seven people and three
kites."), most numerous first, at most `max_kinds` kinds named; the classifier's top class
for the whole image is appended when its score reaches the scene threshold ("(scene:
seashore)"). The structured parts it came from travel with the sentence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from inference_common.assets import CompositionSpec

Json = dict[str, Any]

NO_OBJECTS: Final = "No objects recognised"
_NUMBERS: Final = (
    *("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"),
    *("eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen"),
    *("eighteen", "nineteen", "twenty"),
)
# COCO's labels whose plural the suffix rules below get wrong; the rest are regular.
_PLURALS: Final = {
    "person": "people",
    "mouse": "mice",
    "knife": "knives",
    "sheep": "sheep",
    "broccoli": "broccoli",
}
_PAIRS: Final = frozenset({"skis", "scissors"})  # already plural: "one pair of skis"
_SPELLING: Final = {"tv": "TV"}
_NOT_A_SCENE: Final = frozenset({"background"})  # ImageNet's class 0 says nothing


@dataclass(frozen=True)
class ObjectCount:
    label: str
    count: int
    score: float  # the best of them

    def to_json(self) -> Json:
        return {"label": self.label, "count": self.count, "score": self.score}


def number(count: int) -> str:
    return _NUMBERS[count] if count < len(_NUMBERS) else str(count)


def plural(noun: str) -> str:
    """English plural of a label; the last word of a compound takes it ("wine glasses")."""
    head, _, last = noun.rpartition(" ")
    if last in _PLURALS:
        word = _PLURALS[last]
    elif last.endswith(("s", "x", "z", "ch", "sh")):
        word = last + "es"
    elif last.endswith("y") and last[-2:-1] not in tuple("aeiou"):
        word = last[:-1] + "ies"
    else:
        word = last + "s"
    return f"{head} {word}" if head else word


def counted(count: int, label: str) -> str:
    """ "one person", "seven people", "two pairs of skis", "one TV"."""
    noun = _SPELLING.get(label, label)
    if label in _PAIRS:
        return f"{number(count)} {'pair' if count == 1 else 'pairs'} of {noun}"
    return f"{number(count)} {noun if count == 1 else plural(noun)}"


def listed(phrases: Sequence[str]) -> str:
    """ "a", "a and b", "a, b and c"."""
    if len(phrases) <= 1:
        return "".join(phrases)
    return f"{', '.join(phrases[:-1])} and {phrases[-1]}"


def count_objects(detections: Sequence[Json]) -> list[ObjectCount]:
    """By label, most numerous first, then the most certain, then by name."""
    by_label: dict[str, list[float]] = {}
    for found in detections:
        by_label.setdefault(str(found["label"]), []).append(float(found["score"]))
    counts = [ObjectCount(label, len(scores), max(scores)) for label, scores in by_label.items()]
    return sorted(counts, key=lambda c: (-c.count, -c.score, c.label))


def scene_name(label: str) -> str:
    """ImageNet labels list synonyms ("seashore, coast, seacoast"): the first is the name."""
    return label.split(",", maxsplit=1)[0].strip()


def sentence(objects: Sequence[ObjectCount], max_kinds: int, scene: str | None) -> str:
    named = [counted(o.count, o.label) for o in objects[:max_kinds]]
    others = sum(o.count for o in objects[max_kinds:])
    if others:
        named.append(f"{number(others)} other object{'' if others == 1 else 's'}")
    text = listed(named) or NO_OBJECTS
    if scene is not None:
        text += f" (scene: {scene})"
    return text[0].upper() + text[1:] + "."


def describe(
    spec: CompositionSpec, detection: Json, classification: Json, score_threshold: float
) -> Json:
    """The `result` of a `describe` job, from its detector's and classifier's results."""
    objects = count_objects(detection["detections"])
    # Zero-score classes pad a confident top k and carry no information.
    classes = [c for c in classification["classes"] if c["score"] > 0]
    top = classes[0] if classes else None
    scene = (
        top
        if top is not None
        and top["score"] >= spec.scene_threshold
        and top["label"] not in _NOT_A_SCENE
        else None
    )
    return {
        "task": "describe",
        "description": sentence(
            objects, spec.max_kinds, scene_name(scene["label"]) if scene else None
        ),
        "objects": [o.to_json() for o in objects],
        "scene": scene,
        "detection": detection,
        "classification": {**classification, "classes": classes},
        "thresholds": {
            "score_threshold": score_threshold,
            "scene_threshold": spec.scene_threshold,
        },
        "max_kinds": spec.max_kinds,
    }
