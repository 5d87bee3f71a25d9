"""One job's OpenTelemetry trace: from the HTTP request through the outbox relay, Kafka, the
executor and the fold back, collected in memory.

The job service and an executor run in this process on the real Kafka and MongoDB API, with
one in-memory exporter: what an OTLP backend would receive from both.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Sequence

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from executor_service.settings import ExecutorSettings
from inference_common.kafka import ensure_topics
from inference_common.tracecontext import trace_id
from tests.integration.executor.support import ExecutorThread
from tests.integration.service.harness import (
    BASE,
    image_bytes,
    post_job,
    service_settings,
    start_service,
    wait_for,
    wait_status,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

STEPS = ("fetch", "preprocess", "inference", "postprocess")


def test_one_jobs_trace_runs_from_the_request_to_the_fold(
    isolated_env: dict[str, str], spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXECUTOR_GROUP_ID", f"executor-{uuid.uuid4().hex[:8]}")
    monkeypatch.setenv("EXECUTOR_HTTP_PORT", "0")
    monkeypatch.setenv("EXECUTOR_WORKERS", "1")
    settings = service_settings()
    ensure_topics(settings)
    service = start_service(settings)
    try:
        with ExecutorThread(ExecutorSettings()):
            response = post_job(service.client, image=image_bytes(), execute=True)
            assert response.status_code == 201, response.text
            job_id = response.json()["id"]
            wait_status(service.client, job_id, "DONE", timeout=120)
            wait_for(lambda: named(spans.get_finished_spans(), "job"), 20, "the job's span")
            assert httpx.get(service.url + "/readyz", timeout=30).status_code == 200
    finally:
        service.stop()

    traceparent = response.headers["traceparent"]
    trace = [
        s for s in spans.get_finished_spans() if _hex(s.context.trace_id) == trace_id(traceparent)
    ]
    [request] = [s for s in trace if s.kind is SpanKind.SERVER]
    [relay] = named(trace, "outbox.relay")
    [execute] = named(trace, "execute")
    # `started` and `completed` folded in one write, or (past FOLDER_LINGER_MS) one each
    folds = sorted(named(trace, "fold"), key=start)
    fold = folds[-1]  # the write that finished the job
    [job] = named(trace, "job")
    steps = [one(trace, name) for name in ("publish started", *STEPS, "publish completed")]

    # The request's span is the root, the one its answer names, and the job's trace.
    assert request.name == f"POST {BASE}/jobs" and request.parent is None
    assert traceparent.split("-")[2] == _hex(request.context.span_id, 16)
    assert response.json()["trace_id"] == trace_id(traceparent)
    # Parent and child: the relay continues the request's span, the executor the relay's
    # (carried in the events' traceparent, across Kafka), the fold the executor's; the job's
    # span hangs from the request that created it.
    assert parent_of(relay) == parent_of(job) == request.context.span_id
    assert parent_of(execute) == relay.context.span_id
    assert {parent_of(one_fold) for one_fold in folds} == {execute.context.span_id}
    assert {parent_of(step) for step in steps} == {execute.context.span_id}
    assert (relay.kind, execute.kind, fold.kind) == (
        SpanKind.PRODUCER,
        SpanKind.CONSUMER,
        SpanKind.CONSUMER,
    )
    # The database's commands are spans of the work that issued them: the job inserted, its
    # outbox cleared, the result written (an update or a findAndModify, by store).
    for parent in (request, relay, fold):
        queries = commands(trace, parent)
        assert queries, parent.name
        assert all(dict(q.attributes or {})["db.system"] == "mongodb" for q in queries)
        assert all(within(query, parent) for query in queries)
    assert "insert" in {dict(q.attributes or {})["db.statement"] for q in commands(trace, request)}

    # In order: each step of the execution after the last, all of them inside it.
    assert start(request) < start(relay) < start(execute)
    for earlier, later in itertools.pairwise(steps):
        assert end(earlier) <= start(later), (earlier.name, later.name)
    assert all(within(step, execute) for step in steps)
    assert sum(duration(step) for step in steps) <= duration(execute)
    assert start(steps[0]) < start(folds[0])  # an event exists before it is folded
    assert start(steps[-1]) < start(fold)
    # The job's span runs from its creation, before any of its parts began, to the write that
    # finished it, inside the last fold. The relay's and the executor's spans end with their
    # own work (the outbox cleared, the publish returned), which may be after that fold: not a
    # bound on them.
    assert all(start(job) <= start(part) for part in (relay, execute, *steps, *folds))
    assert start(fold) <= end(job) <= end(fold)
    assert dict(job.attributes or {}) == {"job_id": job_id, "status": "DONE", "attempts": 1}
    # Probes make no server spans (their database commands still do, as roots of their own).
    assert not [
        s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER and "readyz" in s.name
    ]


def commands(trace: list[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    """The database commands `parent` issued (the pymongo instrumentation's client spans)."""
    return [
        s for s in trace if parent_of(s) == parent.context.span_id and s.kind is SpanKind.CLIENT
    ]


def one(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    [found] = named(spans, name)
    return found


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def start(span: ReadableSpan) -> int:
    assert span.start_time is not None
    return span.start_time


def end(span: ReadableSpan) -> int:
    assert span.end_time is not None
    return span.end_time


def duration(span: ReadableSpan) -> int:
    return end(span) - start(span)


def within(child: ReadableSpan, parent: ReadableSpan) -> bool:
    return start(parent) <= start(child) and end(child) <= end(parent)


def _hex(value: int, width: int = 32) -> str:
    return f"{value:0{width}x}"


def named(spans: Sequence[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]
