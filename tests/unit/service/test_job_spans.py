"""Traces on fakes: every job that finishes gets its `job` span, however it finished, and
what the sweep or a fold decides for a job hangs from a span that is exported."""

from __future__ import annotations

import asyncio

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from inference_common.events import EventType
from inference_common.tracecontext import Span
from tests.unit.service.builders import jpeg, new_job, record
from tests.unit.service.fakes import wire
from tests.unit.service.test_retention import finished, sweep
from tests.unit.service.test_sweeping import overdue


def named(spans: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in spans.get_finished_spans() if s.name == name]


def span_id(span: ReadableSpan) -> str:
    return format(span.context.span_id, "016x")


def parent_in(traceparent: str | None) -> str:
    assert traceparent is not None
    return traceparent.split("-")[2]


def test_a_cancelled_job_gets_its_job_span(spans: InMemorySpanExporter) -> None:
    wired = wire()
    job, _ = asyncio.run(wired.service.create(new_job()))
    assert named(spans, "job") == []  # not finished yet
    asyncio.run(wired.service.cancel("alice", job.id, None, Span()))
    [job_span] = named(spans, "job")
    assert dict(job_span.attributes or {}) == {
        "job_id": job.id,
        "status": "CANCELLED",
        "attempts": 1,
    }


def test_a_retry_and_a_deadline_failure_hang_from_the_sweep_that_decided_them(
    spans: InMemorySpanExporter,
) -> None:
    wired = wire(max_attempts=2)
    job, _ = asyncio.run(wired.service.create(new_job()))
    overdue(wired, job.id)
    asyncio.run(wired.sweeping.sweep_once())
    [first_sweep] = named(spans, "deadline sweep")
    retry = wired.store.outbox_of(job.id)[-1]
    assert retry.type is EventType.EXECUTION_REQUESTED
    assert parent_in(retry.traceparent) == span_id(first_sweep)
    assert named(spans, "job") == []  # retried, not finished

    overdue(wired, job.id)
    asyncio.run(wired.sweeping.sweep_once())
    second_sweep = next(s for s in named(spans, "deadline sweep") if s is not first_sweep)
    failed = wired.store.outbox_of(job.id)[-1]
    assert failed.type is EventType.FAILED
    assert parent_in(failed.traceparent) == span_id(second_sweep)
    [job_span] = named(spans, "job")
    assert dict(job_span.attributes or {})["status"] == "FAILED"
    assert dict(job_span.attributes or {})["attempts"] == 2


def test_a_retry_after_a_failure_hangs_from_the_fold(spans: InMemorySpanExporter) -> None:
    wired = wire(max_attempts=2)
    job, _ = asyncio.run(wired.service.create(new_job()))
    request = wired.store.outbox_of(job.id)[-1].cloudevent().get_data()
    assert isinstance(request, dict)
    error = {"code": "model_error", "message": "later", "retryable": True}
    asyncio.run(wired.folding.fold([record(EventType.FAILED, request, error=error)]))
    [fold] = named(spans, "fold")
    retry = wired.store.outbox_of(job.id)[-1]
    assert retry.type is EventType.EXECUTION_REQUESTED
    assert parent_in(retry.traceparent) == span_id(fold)


def test_a_purged_event_hangs_from_the_retention_sweep(spans: InMemorySpanExporter) -> None:
    wired = wire()
    job = finished(wired, jpeg())
    assert sweep(wired) == 1
    [retention_sweep] = named(spans, "retention sweep")
    purged = wired.store.outbox_of(job.id)[-1]
    assert purged.type is EventType.PURGED
    assert parent_in(purged.traceparent) == span_id(retention_sweep)
