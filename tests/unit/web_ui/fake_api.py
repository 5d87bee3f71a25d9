"""A fake job API at the HTTP level, for `httpx.MockTransport`: just enough of the contract."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

BASE = "/api/v1/inference"
MNIST = {
    "name": "mnist-lstm-tflm-float32",
    "title": "MNIST digits, TFLite Micro LSTM, float32",
    "task": "classification",
    "default_options": {"top_k": 10},
    "label_count": 10,
}
IMAGENET = {
    "name": "mobilenet-v2-imagenet-quant",
    "title": "ImageNet, MobileNet v2",
    "task": "classification",
    "default_options": {"top_k": 5},
    "label_count": 1001,
}
SSD = {
    "name": "ssd-mobilenet-v1-coco-quant",
    "title": "COCO objects, SSD MobileNet v1",
    "task": "object_detection",
    "default_options": {"score_threshold": 0.5},
    "label_count": 90,
}
JOB_ID = "0123456789abcdef0123456789abcdef"
BATCH_ID = "fedcba9876543210fedcba9876543210"


def problem(status: int, title: str, detail: str) -> httpx.Response:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    return httpx.Response(
        status, content=json.dumps(body), headers={"Content-Type": "application/problem+json"}
    )


def digits_result(best: int) -> dict[str, Any]:
    scores = [0.01] * 10
    scores[best] = 0.91
    order = sorted(range(10), key=lambda d: -scores[d])  # the service answers best first
    classes = [{"index": d, "label": str(d), "score": scores[d]} for d in order]
    return {"task": "classification", "classes": classes}


def detection_result() -> dict[str, Any]:
    return {
        "task": "object_detection",
        "image_width": 100,
        "image_height": 80,
        "detections": [
            {
                "index": 16,
                "label": "dog",
                "score": 0.9,
                "box": {"ymin": 0.25, "xmin": 0.1, "ymax": 0.75, "xmax": 0.5},
                "box_pixels": {"left": 10, "top": 20, "right": 50, "bottom": 60},
            }
        ],
    }


@dataclass
class FakeApi:
    """Answers like the service would; `statuses` is what successive polls of the job say."""

    models: list[dict[str, Any]] = field(default_factory=lambda: [MNIST, IMAGENET, SSD])
    result: dict[str, Any] = field(default_factory=lambda: digits_result(7))
    statuses: list[str] = field(default_factory=lambda: ["RUNNING", "DONE"])
    error: dict[str, str] | None = None
    create: Callable[[httpx.Request], httpx.Response] | None = None
    requests: list[httpx.Request] = field(default_factory=list)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def job(self, status: str, model: str) -> dict[str, Any]:
        return {"id": JOB_ID, "status": status, "model": model, "error": self.error}

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path.removeprefix(BASE)
        if path == "/models":
            return httpx.Response(200, json={"items": self.models})
        if path == "/jobs" and request.method == "POST":
            if self.create is not None:
                return self.create(request)
            return httpx.Response(201, json=self.job("QUEUED", "m"))
        if path == f"/jobs/{JOB_ID}":
            status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
            return httpx.Response(200, json=self.job(status, "m"))
        if path == f"/jobs/{JOB_ID}/result":
            return httpx.Response(200, json={"job_id": JOB_ID, "result": self.result})
        return self.batches(path)

    def batches(self, path: str) -> httpx.Response:
        """The batch endpoints; 404 for any other path."""
        if path == "/batches":
            return httpx.Response(201, json=self.batch(finished=False))
        if path == f"/batches/{BATCH_ID}":
            return httpx.Response(200, json=self.batch(finished=True))
        if path == f"/batches/{BATCH_ID}/results":
            lines = [
                {"index": 0, "name": "a.png", "job_id": JOB_ID, "status": "DONE",
                 "result": self.result},
                {"index": 1, "name": "b.png", "job_id": None, "status": "REJECTED",
                 "problem": {"type": "t", "title": "Unsupported", "status": 415,
                             "detail": "not an image"}},
            ]  # fmt: skip
            return httpx.Response(200, text="".join(json.dumps(line) + "\n" for line in lines))
        return problem(404, "Not Found", path)

    @staticmethod
    def batch(finished: bool) -> dict[str, Any]:
        counts = dict.fromkeys(
            ["NEW", "QUEUED", "RUNNING", "DONE", "FAILED", "CANCELLED", "REJECTED", "DELETED"], 0
        )
        counts.update({"DONE": 1} if finished else {"QUEUED": 1}, REJECTED=1)
        return {
            "id": BATCH_ID,
            "total": 2,
            "counts": counts,
            "progress": 1.0 if finished else 0.5,
            "finished": finished,
            "rejected": [{"index": 1, "name": "b.png", "problem": {"detail": "not an image"}}],
        }
