"""A batch's results lines (`GET /batches/{id}/results`) as the rows of the page's table."""

from __future__ import annotations

from typing import Any


def answer_of(result: dict[str, Any]) -> str:
    """A result in a few words: the description, the best class, or what was detected."""
    if result.get("task") == "describe":
        return str(result.get("description", ""))
    if "detections" in result:
        labels = [str(d["label"]) for d in result["detections"]]
        return f"{len(labels)} detected" + (f": {', '.join(sorted(set(labels)))}" if labels else "")
    classes = sorted(result.get("classes", []), key=lambda c: -float(c["score"]))
    if not classes:
        return "no class"
    return f"{classes[0]['label']} ({float(classes[0]['score']):.1%})"


def batch_row(line: dict[str, Any]) -> dict[str, str]:
    """File, status and the answer, or why there is none (the line's problem)."""
    result = line.get("result")
    if isinstance(result, dict):
        answer = answer_of(result)
    else:
        problem = line.get("problem") or {}
        answer = str(problem.get("detail") or problem.get("title") or "")
    return {
        "file": str(line.get("name", "")),
        "status": str(line.get("status", "")),
        "answer": answer,
    }
