"""A job result as the rows of a bar chart: one (label, probability) per bar."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Bar:
    label: str
    value: float


def classification_bars(result: dict[str, Any], label_count: int | None) -> list[Bar]:
    """A full distribution (every class, e.g. ten digits) in class order; a top-k by score,
    without the classes scored 0 (a quantised model pads its top k with them: noise)."""
    classes = sorted(result.get("classes", []), key=lambda c: int(c["index"]))
    if label_count is None or len(classes) < label_count:
        classes = [c for c in classes if float(c["score"]) > 0]
        classes.sort(key=lambda c: -float(c["score"]))
    return [Bar(str(c["label"]), float(c["score"])) for c in classes]


def detection_bars(result: dict[str, Any]) -> list[Bar]:
    """One bar per detection, numbered as the boxes on the image are."""
    return [
        Bar(f"{number}. {d['label']}", float(d["score"]))
        for number, d in enumerate(result.get("detections", []), start=1)
    ]


def chart_table(bars: list[Bar], value_name: str = "probability") -> dict[str, list[Any]]:
    """Columns for `st.bar_chart(x="label", y=value_name)`."""
    return {"label": [bar.label for bar in bars], value_name: [bar.value for bar in bars]}


def is_digit_model(task: str, label_count: int | None) -> bool:
    return task == "classification" and label_count == 10


def job_options(task: str, label_count: int | None, top_k: int = 5) -> dict[str, int]:
    """Every class when there are few (all ten digits), else the `top_k` best."""
    if task != "classification":
        return {}
    if label_count is not None and label_count <= 10:
        return {"top_k": label_count}
    return {"top_k": top_k}
