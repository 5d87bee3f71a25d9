"""What every HTTP request leaves behind: its span, its metrics, optionally an access log line.

The span (a child of the caller's `traceparent`, or of the job's own trace when a request
on a job came without one; with OpenTelemetry on, the server span the tracer started: the
root of a new trace unless the caller sent one) goes into the events the request raises and
back to the caller in the `traceparent` response header. Outermost but for Connexion's
last-resort 500 handler (and OpenTelemetry's server span), so problem answers are measured
like any other.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable
from contextvars import ContextVar
from typing import Any, Final

from starlette.datastructures import MutableHeaders
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from inference_common import tracing
from inference_common.tracecontext import Span, trace_id
from inference_service.metrics import ServiceMetrics

access_log = logging.getLogger("inference_service.access")

_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_current_span: ContextVar[Span] = ContextVar("request_span")


def request_span() -> Span:
    """The span of the request being handled; a span of its own outside any request."""
    span = _current_span.get(None)
    return span if span is not None else Span()


class RouteTemplates:
    """A request path as the template of its route (`/jobs/{job_id}`): bounded label values."""

    OTHER: Final = "other"

    def __init__(self, base_path: str, api_paths: Iterable[str], root_paths: Iterable[str]):
        self._api = [(compile_path(base_path + path)[0], base_path + path) for path in api_paths]
        self._root = frozenset(root_paths)

    def __call__(self, path: str) -> str:
        if path in self._root:
            return path
        for pattern, template in self._api:
            if pattern.match(path):
                return template
        return self.OTHER


def server_span_options(routes: RouteTemplates, untraced: Iterable[str]) -> dict[str, Any]:
    """OpenTelemetry's ASGI middleware's: a server span per request with the standard HTTP
    attributes, named by its route (bounded), no spans per body chunk sent or received, none
    at all for the `untraced` paths (probes and scrapes)."""

    def name_by_route(span: tracing.Span, scope: Scope) -> None:
        route = routes(scope["path"])
        span.update_name(f"{scope.get('method', 'GET')} {route}")
        span.set_attribute("http.route", route)

    return {
        "tracer_provider": tracing.active_provider(),
        "server_request_hook": name_by_route,
        "exclude_spans": ["receive", "send"],
        "excluded_urls": ",".join(f"{re.escape(path)}$" for path in untraced),
    }


class RequestTelemetry:
    """ASGI middleware: the request's span, its duration by route and status, its log line."""

    def __init__(
        self, app: ASGIApp, *, metrics: ServiceMetrics, routes: RouteTemplates, access: bool
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        made = tracing.traceparent_of() if tracing.enabled() else None
        span = Span(_header(scope, b"traceparent"), made=made)
        token = _current_span.set(span)
        began = time.perf_counter()
        answered = False

        async def answer(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.start" and not answered:
                answered = True
                traceparent = span.traceparent()
                MutableHeaders(scope=message).append("traceparent", traceparent)
                self._observe(scope, message["status"], began, traceparent)
            await send(message)

        try:
            await self.app(scope, receive, answer)
        except BaseException:
            if not answered:  # Connexion's last-resort handler answers 500
                self._observe(scope, 500, began, span.traceparent())
            raise
        finally:
            _current_span.reset(token)

    def _observe(self, scope: Scope, status: int, began: float, traceparent: str) -> None:
        seconds = time.perf_counter() - began
        method = scope["method"] if scope["method"] in _METHODS else "other"
        route = self.routes(scope["path"])
        self.metrics.http_seconds.labels(method, route, str(status)).observe(seconds)
        if self.access:
            access_log.info(
                "%s %s %d",
                scope["method"],
                scope["path"],
                status,
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "route": route,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 3),
                    "trace_id": trace_id(traceparent),
                },
            )


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return None
