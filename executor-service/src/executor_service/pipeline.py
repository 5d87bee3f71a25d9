"""One request through the model: image, checksum, preprocessing, invoke, decoding."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from executor_service import decoding
from executor_service.errors import ErrorCode, JobFailure
from executor_service.images import ImageSource, verify
from executor_service.jobs import ExecutionRequest, is_past
from executor_service.models import LoadedModel, ModelRegistry
from executor_service.preprocessing import prepare


@dataclass(frozen=True)
class Limits:
    max_image_bytes: int
    max_image_pixels: int
    jpeg_draft: bool = True


@dataclass
class Stopwatch:
    """Milliseconds per step, for the `timings` of `job.completed.v1`."""

    timings: dict[str, float] = field(default_factory=dict)
    _last: float = field(default_factory=time.perf_counter)

    def lap(self, step: str) -> None:
        now = time.perf_counter()
        self.timings[f"{step}_ms"] = round((now - self._last) * 1000, 3)
        self._last = now


def run_pipeline(
    request: ExecutionRequest,
    registry: ModelRegistry,
    *,
    images: ImageSource,
    limits: Limits,
    now: datetime,
    watch: Stopwatch,
) -> dict[str, Any]:
    """The `result` of `job.completed.v1`; raises JobFailure for any failure of the job."""
    if is_past(request.deadline, now):
        raise JobFailure(
            ErrorCode.DEADLINE_EXCEEDED,
            f"deadline {request.deadline.isoformat()} passed before the execution started",
            retryable=True,
        )
    model = registry.get(request.model)
    _check_task(request, model)
    data = images.read(request.image.uri, limits.max_image_bytes)
    verify(data, request.image)
    watch.lap("fetch")
    prepared = prepare(
        data, model, max_pixels=limits.max_image_pixels, jpeg_draft=limits.jpeg_draft
    )
    watch.lap("preprocess")
    outputs = model.run(prepared.tensor)
    watch.lap("inference")
    options = request.options
    if model.spec.task == "classification":
        top_k = options.top_k or model.spec.default_top_k
        result = decoding.classify(outputs, model, top_k)
    else:
        threshold = options.score_threshold
        if threshold is None:
            threshold = model.spec.default_score_threshold
        result = decoding.detect(outputs, model, (prepared.width, prepared.height), threshold)
    watch.lap("postprocess")
    return result


def _check_task(request: ExecutionRequest, model: LoadedModel) -> None:
    if request.task != model.spec.task:
        raise JobFailure(
            ErrorCode.INVALID_REQUEST,
            f"model {model.name} does {model.spec.task}, the request asks for {request.task}",
        )
