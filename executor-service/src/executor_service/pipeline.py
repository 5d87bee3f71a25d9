"""One request through its model (or a composition's models): image, checksum,
preprocessing, invoke, decoding."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from executor_service import decoding
from executor_service.description import describe
from executor_service.errors import ErrorCode, JobFailure
from executor_service.images import ImageSource, verify
from executor_service.jobs import ExecutionRequest, ModelOptions, is_past
from executor_service.models import LoadedModel, ModelRegistry
from executor_service.preprocessing import prepare
from inference_common import tracing

_T = TypeVar("_T")


@dataclass(frozen=True)
class Limits:
    max_image_bytes: int
    max_image_pixels: int
    jpeg_draft: bool = True


@dataclass
class Stopwatch:
    """Milliseconds per step, for the `timings` of `job.completed.v1`; with tracing on, each
    step is a span of the current one too (fetch, preprocess, inference: the invoke,
    postprocess)."""

    timings: dict[str, float] = field(default_factory=dict)
    _last: float = field(default_factory=time.perf_counter)
    _last_ns: int = field(default_factory=time.time_ns)  # the same moment, for spans

    def lap(self, step: str) -> None:
        """Time since the last lap, added to the step's: a composition runs a model's steps
        once per model, and its timings are their sums."""
        now = time.perf_counter()
        key = f"{step}_ms"
        self.timings[key] = round(self.timings.get(key, 0.0) + (now - self._last) * 1000, 3)
        self._last = now
        if tracing.enabled():
            now_ns = time.time_ns()
            tracing.record(step, parent=None, start_ns=self._last_ns, end_ns=now_ns)
            self._last_ns = now_ns


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
    options = request.options
    if request.task == "describe":
        spec = registry.composition(request.model)
        detector, classifier = registry.get(spec.detector), registry.get(spec.classifier)
        threshold = _or(options.score_threshold, spec.default_score_threshold)
        options = ModelOptions(
            top_k=_or(options.top_k, spec.default_top_k), score_threshold=threshold
        )
        data = _fetch(request, images, limits, watch)
        detection = _infer(data, detector, options, limits, watch)
        classification = _infer(data, classifier, options, limits, watch)
        return describe(spec, detection, classification, threshold)
    model = registry.get(request.model)
    _check_task(request, model)
    return _infer(_fetch(request, images, limits, watch), model, options, limits, watch)


def _fetch(
    request: ExecutionRequest, images: ImageSource, limits: Limits, watch: Stopwatch
) -> bytes:
    data = images.read(request.image.uri, limits.max_image_bytes)
    verify(data, request.image)
    watch.lap("fetch")
    return data


def _infer(
    data: bytes, model: LoadedModel, options: ModelOptions, limits: Limits, watch: Stopwatch
) -> dict[str, Any]:
    """One model on the image's bytes: its classification or detection result."""
    prepared = prepare(
        data, model, max_pixels=limits.max_image_pixels, jpeg_draft=limits.jpeg_draft
    )
    watch.lap("preprocess")
    outputs = model.run(prepared.tensor)
    watch.lap("inference")
    spec = model.spec
    if spec.task == "classification":
        result = decoding.classify(outputs, model, _or(options.top_k, spec.default_top_k))
    else:
        threshold = _or(options.score_threshold, spec.default_score_threshold)
        result = decoding.detect(outputs, model, (prepared.width, prepared.height), threshold)
    watch.lap("postprocess")
    return result


def _or(value: _T | None, default: _T) -> _T:
    return default if value is None else value


def _check_task(request: ExecutionRequest, model: LoadedModel) -> None:
    if request.task != model.spec.task:
        raise JobFailure(
            ErrorCode.INVALID_REQUEST,
            f"model {model.name} does {model.spec.task}, the request asks for {request.task}",
        )
