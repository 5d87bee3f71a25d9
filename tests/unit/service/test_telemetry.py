"""Every HTTP answer: a span in `traceparent`, a sample in the request metrics, a log line."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from inference_common.tracecontext import Span, new_traceparent, trace_id
from inference_service.api.telemetry import RequestTelemetry, RouteTemplates, request_span
from inference_service.metrics import ServiceMetrics

BASE = "/api/v1/inference"
ROUTES = RouteTemplates(
    BASE, ["/jobs", "/jobs/{job_id}", "/jobs/{job_id}/result"], ["/healthz", "/metrics"]
)


def test_paths_become_their_route_templates() -> None:
    assert ROUTES(f"{BASE}/jobs") == f"{BASE}/jobs"
    assert ROUTES(f"{BASE}/jobs/{'a' * 32}") == f"{BASE}/jobs/{{job_id}}"
    assert ROUTES(f"{BASE}/jobs/{'a' * 32}/result") == f"{BASE}/jobs/{{job_id}}/result"
    assert ROUTES("/metrics") == "/metrics"
    # Anything else shares one label, however many different paths clients try.
    assert ROUTES(f"{BASE}/jobs/x/y/z") == ROUTES("/wp-admin") == "other"


class App:
    """Answers like a handler would: after asking for the request's span (or failing)."""

    def __init__(self, status: int = 200, fail: bool = False) -> None:
        self.status = status
        self.fail = fail
        self.spans: list[Span] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.spans.append(request_span())
        if self.fail:
            raise RuntimeError("a bug")
        await send({"type": "http.response.start", "status": self.status, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


def call(
    app: App,
    path: str,
    headers: dict[str, str] | None = None,
    *,
    access: bool = False,
    metrics: ServiceMetrics | None = None,
) -> tuple[httpx.Response, ServiceMetrics]:
    metrics = metrics or ServiceMetrics()
    middleware = RequestTelemetry(app, metrics=metrics, routes=ROUTES, access=access)

    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=middleware)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get(path, headers=headers)

    return asyncio.run(run()), metrics


def test_the_answer_carries_a_child_of_the_callers_span() -> None:
    app, caller = App(), new_traceparent()
    response, _ = call(app, f"{BASE}/jobs", {"traceparent": caller})
    answered = response.headers["traceparent"]
    assert trace_id(answered) == trace_id(caller) and answered != caller
    # The span the handler saw (and put in its events) is the one answered.
    assert app.spans[0].traceparent() == answered


def test_without_a_caller_span_the_answer_starts_a_trace() -> None:
    response, _ = call(App(), f"{BASE}/jobs", {"traceparent": "nonsense"})
    assert trace_id(response.headers["traceparent"]) is not None


def test_requests_are_measured_by_method_route_and_status() -> None:
    _, metrics = call(App(404), f"{BASE}/jobs/{'b' * 32}")
    labels = {"method": "GET", "route": f"{BASE}/jobs/{{job_id}}", "status": "404"}
    sample = metrics.registry.get_sample_value
    assert sample("inference_http_request_duration_seconds_count", labels) == 1


def test_a_request_that_crashes_counts_as_a_500() -> None:
    metrics = ServiceMetrics()
    with pytest.raises(RuntimeError):  # Connexion's last-resort handler answers it
        call(App(fail=True), "/healthz", metrics=metrics)
    labels = {"method": "GET", "route": "/healthz", "status": "500"}
    sample = metrics.registry.get_sample_value
    assert sample("inference_http_request_duration_seconds_count", labels) == 1


def test_the_access_log_is_one_line_per_request_when_asked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caller = new_traceparent()
    with caplog.at_level(logging.INFO, "inference_service.access"):
        call(App(201), f"{BASE}/jobs", {"traceparent": caller}, access=True)
        call(App(), f"{BASE}/jobs")  # access=False: no line
    [line] = caplog.records
    fields: dict[str, Any] = line.__dict__
    assert (fields["status"], fields["route"], fields["trace_id"]) == (
        201,
        f"{BASE}/jobs",
        trace_id(caller),
    )


def test_outside_a_request_a_span_of_its_own() -> None:
    assert trace_id(request_span().traceparent()) is not None
