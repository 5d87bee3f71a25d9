"""Benchmark (not a test): the CPU one job's tracing costs, off against on.

    uv run python -m benchmarks.tracing [--jobs 300] [--model NAME]

In one process, on the real code, without Kafka or a database (so without the pymongo
instrumentation's command spans):
- the job service's part: a request through RequestTelemetry (and, on, OpenTelemetry's ASGI
  middleware) to an endpoint that asks for the request's span as the handlers do; the relay's
  span and its two events continuing it; the fold's span and the job's;
- the executor's part: `run_execution` on a real model (the image from memory, preprocess,
  invoke, decode, `started` and `completed` built and handed to a list).
Off: no OTEL_* variable, the default. On: the SDK with a BatchSpanProcessor exporting OTLP
over HTTP to a sink on loopback that discards what it gets (the sink's CPU counts too).
CPU is this process's time (every thread) per job; off and on alternate in rounds, so load
that comes and goes touches both.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from starlette.types import ASGIApp, Receive, Scope, Send

from executor_service.execution import ExecutionContext, run_execution
from executor_service.jobs import parse_execution
from executor_service.metrics import Metrics
from executor_service.models import ModelRegistry
from executor_service.pipeline import Limits
from inference_common import tracing
from inference_common.assets import AssetStore, load_manifest
from inference_common.contracts import EventSchemas
from inference_common.events import EventType, KafkaRecord, from_record, new_event, to_record
from inference_service.api.telemetry import (
    RequestTelemetry,
    RouteTemplates,
    request_span,
    server_span_options,
)
from inference_service.domain import events
from inference_service.domain.job import Job
from inference_service.metrics import ServiceMetrics
from inference_service.ports import Outbox
from inference_service.service_layer import relaying, writer

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / ".cache" / "assets"
IMAGE = "cat_720p.jpg"
BASE = "/api/v1/inference"


class _Sink(BaseHTTPRequestHandler):
    """An OTLP/HTTP endpoint that takes everything and keeps nothing."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args: Any) -> None:
        return


class _Images:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self, uri: str, max_bytes: int) -> bytes:
        return self.data


async def _endpoint(scope: Scope, receive: Receive, send: Send) -> None:
    request_span().traceparent()  # what the handlers ask for, for the events they raise
    await send({"type": "http.response.start", "status": 201, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


def _app(traced: bool) -> ASGIApp:
    routes = RouteTemplates(BASE, ["/jobs"], [])
    app: ASGIApp = RequestTelemetry(
        _endpoint, metrics=ServiceMetrics(), routes=routes, access=False
    )
    if not traced:
        return app
    return OpenTelemetryMiddleware(app, **server_span_options(routes, untraced=["/healthz"]))


async def _request(app: ASGIApp) -> None:
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": BASE + "/jobs",
        "raw_path": (BASE + "/jobs").encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1")],
        "server": ("127.0.0.1", 8080),
        "client": ("127.0.0.1", 40000),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(_message: Any) -> None:
        return

    await app(scope, receive, send)


def _job(traceparent: str) -> Job:
    at = datetime.now(UTC)
    return Job.create(
        job_id=os.urandom(16).hex(),
        owner="bench",
        name="cat",
        model="mobilenet-v2-imagenet-quant",
        task="classification",
        options={},
        image=None,
        idempotency_key=None,
        fingerprint="f",
        traceparent=traceparent,
        at=at,
    ).after


def _service_part(app: ASGIApp, job: Job) -> None:
    """What the job service does for tracing's sake around one job."""
    asyncio.run(_request(app))
    created = events.created(job, job.traceparent)
    outbox = Outbox(job.id, (created, created), deleted=False, image_uri=None)
    span = relaying._relay_span(outbox.job_id, list(outbox.events))
    [relaying._continuing(event, span) for event in outbox.events]
    with tracing.within(span):
        pass
    with tracing.span("fold", parent=job.traceparent, kind=tracing.SpanKind.CONSUMER):
        pass
    if tracing.enabled():
        writer._record_job_span(job)


def _request_record(data: bytes, model: str) -> KafkaRecord:
    job_id = os.urandom(16).hex()
    sha256 = hashlib.sha256(data).hexdigest()
    image = {
        "uri": f"fs:{sha256[:2]}/{sha256}/{job_id}",  # a key as the stores make them
        "sha256": sha256,
        "size": len(data),
        "media_type": "image/jpeg",
        "width": 1280,
        "height": 720,
    }
    request = {
        "job_id": job_id,
        "execution_id": os.urandom(16).hex(),
        "attempt": 1,
        "model": model,
        "task": "classification",
        "options": {},
        "image": image,
        "deadline": (datetime.now(UTC) + timedelta(minutes=10)).isoformat(),
    }
    event = new_event(EventType.EXECUTION_REQUESTED, "/inference-service", job_id, request)
    return to_record(event)


def _helpers_while_off(jobs: int = 100_000) -> float:
    """CPU seconds per job of the tracing calls one job makes while tracing is off (the
    executor's execute and two publish spans, four steps, the fold's span): what the hot path
    pays by default."""
    assert not tracing.enabled()
    began = time.process_time()
    for _ in range(jobs):
        with tracing.span("execute", parent="x", attributes={"job_id": "x", "attempt": 1}):
            for _step in range(4):
                if tracing.enabled():
                    raise AssertionError
            for _publish in range(2):
                with tracing.span("publish"):
                    pass
        with tracing.span("fold", parent="x", attributes={"job_id": "x", "events": 2}):
            pass
        tracing.within(tracing.open_span("outbox.relay", parent="x"))
    return (time.process_time() - began) / jobs


def _round(
    jobs: int, app: ASGIApp, execute: Any, record: KafkaRecord, provider: TracerProvider | None
) -> float:
    """CPU seconds per job over `jobs` jobs; traced through `provider` when one is given, its
    spans exported before the clock stops."""
    if provider is not None:
        tracing.activate(provider)
    began = time.process_time()
    for _ in range(jobs):
        envelope = from_record(record.value, list(record.headers), record.key)
        job = _job(envelope.traceparent or "")
        _service_part(app, job)
        execute(envelope)
    if provider is not None:
        provider.force_flush()
        tracing.deactivate()
    return (time.process_time() - began) / jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=300, help="jobs per mode, in 5 rounds")
    parser.add_argument("--model", default="mobilenet-v2-imagenet-quant")
    args = parser.parse_args()

    store = AssetStore(load_manifest(ROOT / "assets" / "manifest.toml"), ASSETS)
    registry = ModelRegistry.load(store)
    data = (ASSETS / "images" / IMAGE).read_bytes()
    schemas = EventSchemas.from_dir(ROOT / "openapi")
    context = ExecutionContext(
        executor="bench:1",
        images=_Images(data),
        limits=Limits(max_image_bytes=10_000_000, max_image_pixels=50_000_000),
        metrics=Metrics(),
        schemas=schemas,
    )
    record = _request_record(data, args.model)
    published: list[KafkaRecord] = []

    def execute(envelope: Any) -> None:
        execution = parse_execution(envelope.data, schemas)
        completed = run_execution(envelope, execution, registry, context, published.append)
        assert completed, published[-1].value
        published.clear()

    sink = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{sink.server_address[1]}/v1/traces"
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))

    per_round = max(1, args.jobs // 5)
    results: dict[str, list[float]] = {"off": [], "on": []}
    _round(5, _app(False), execute, record, None)  # warm-up
    for _ in range(5):
        results["off"].append(_round(per_round, _app(False), execute, record, None))
        results["on"].append(_round(per_round, _app(True), execute, record, provider))
    provider.shutdown()
    sink.shutdown()

    off = sorted(results["off"])[2] * 1000
    on = sorted(results["on"])[2] * 1000
    print(f"load average: {os.getloadavg()[0]:.2f}; {per_round * 5} jobs per mode; {args.model}")
    print(f"CPU per job, tracing off: {off:.3f} ms (median of 5 rounds)")
    print(f"CPU per job, tracing on:  {on:.3f} ms ({on - off:+.3f} ms, {on / off:.3f}x)")
    print(f"the tracing calls alone, while off: {_helpers_while_off() * 1e6:.2f} µs per job")


if __name__ == "__main__":
    main()
