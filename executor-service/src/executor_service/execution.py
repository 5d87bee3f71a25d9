"""One execution on a worker: `job.started.v1`, the pipeline, then its outcome event."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from executor_service import results
from executor_service.errors import ErrorCode, JobFailure
from executor_service.images import ImageSource
from executor_service.jobs import Execution, parse_request
from executor_service.metrics import Metrics
from executor_service.models import ModelRegistry
from executor_service.pipeline import Limits, Stopwatch, run_pipeline
from inference_common import tracing
from inference_common.contracts import EventSchemas
from inference_common.events import Envelope, KafkaRecord, utcnow
from inference_common.tracecontext import child_traceparent, trace_id

log = logging.getLogger(__name__)

Publish = Callable[[KafkaRecord], None]


@dataclass(frozen=True)
class ExecutionContext:
    """What every execution needs besides its request and its worker's models."""

    executor: str  # "host:pid", the `executor` / `failed_by` of result events
    images: ImageSource
    limits: Limits
    metrics: Metrics
    schemas: EventSchemas  # openapi/asyncapi.yaml's, to check each request against
    clock: Callable[[], datetime] = field(default=utcnow)


def run_execution(
    envelope: Envelope,
    execution: Execution,
    registry: ModelRegistry,
    context: ExecutionContext,
    publish: Publish,
) -> bool:
    """Publish started and then completed or failed; True when completed."""
    with tracing.span(
        "execute",
        parent=envelope.traceparent,
        kind=tracing.SpanKind.CONSUMER,
        attributes={"job_id": execution.job_id, "attempt": execution.attempt},
    ) as span:
        # The result events continue this span (a new one of the same trace, untraced).
        traceparent = tracing.traceparent_of(span) if span is not None else None
        report = _Report(
            execution, context, publish, traceparent or child_traceparent(envelope.traceparent)
        )
        return _run(envelope, execution, registry, context, report)


def _run(
    envelope: Envelope,
    execution: Execution,
    registry: ModelRegistry,
    context: ExecutionContext,
    report: _Report,
) -> bool:
    report.started()
    watch = Stopwatch()
    try:
        request = parse_request(envelope.data, envelope.subject, context.schemas)
        result = run_pipeline(
            request,
            registry,
            images=context.images,
            limits=context.limits,
            now=context.clock(),
            watch=watch,
        )
    except JobFailure as failure:
        report.failed(failure)
        return False
    except Exception as exc:  # a bug, not the request: fail this execution, keep the worker
        log.exception("unexpected error in an execution", extra=report.log_fields)
        report.failed(JobFailure(ErrorCode.MODEL_ERROR, f"internal error: {exc!r}"))
        return False
    report.completed(request.model, result, watch)
    return True


class _Report:
    """The events, metrics and log lines of one execution, under one trace span."""

    def __init__(
        self, execution: Execution, context: ExecutionContext, publish: Publish, traceparent: str
    ) -> None:
        self._execution = execution
        self._context = context
        self._publish = publish
        self._traceparent = traceparent
        self._began = time.perf_counter()
        self.log_fields = {"job_id": execution.job_id, "trace_id": trace_id(traceparent)}

    def started(self) -> None:
        context = self._context
        with tracing.span("publish started"):
            self._publish(
                results.started(
                    self._execution, context.executor, context.clock(), self._traceparent
                )
            )

    def failed(self, failure: JobFailure) -> None:
        context = self._context
        context.metrics.jobs.labels("failed").inc()
        context.metrics.failures.labels(failure.code.value).inc()
        with tracing.span("publish failed"):
            self._publish(
                results.failed(
                    self._execution, context.executor, failure, context.clock(), self._traceparent
                )
            )
        log.info(
            "execution failed",
            extra={**self.log_fields, "code": failure.code.value, "error": failure.message},
        )

    def completed(self, model: str, result: dict[str, Any], watch: Stopwatch) -> None:
        context = self._context
        elapsed = time.perf_counter() - self._began
        watch.timings["total_ms"] = round(elapsed * 1000, 3)
        metrics = context.metrics
        metrics.inference_seconds.labels(model).observe(watch.timings["inference_ms"] / 1000)
        metrics.job_seconds.labels(model).observe(elapsed)
        metrics.jobs.labels("completed").inc()
        with tracing.span("publish completed"):
            self._publish(
                results.completed(
                    self._execution,
                    context.executor,
                    model=model,
                    result=result,
                    timings=watch.timings,
                    at=context.clock(),
                    traceparent=self._traceparent,
                )
            )
        log.info("execution completed", extra={**self.log_fields, "model": model, **watch.timings})
