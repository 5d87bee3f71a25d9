"""OpenTelemetry traces for every service of the platform, off unless the environment asks.

The standard variables switch them on: `OTEL_TRACES_EXPORTER` (`otlp`, `console`, `none`),
or an `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` alone (then
`otlp`). The SDK reads the rest itself: `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
`OTEL_TRACES_SAMPLER[_ARG]`, `OTEL_BSP_*`, `OTEL_EXPORTER_OTLP_*`. With none set, nothing
is active and every helper here returns at once: no SDK work on the hot path, nothing leaves the
machine.

The context crosses Kafka in the CloudEvents `traceparent` extension, never in a header of
its own: `traceparent_of` is what an event carries, `span(parent=...)` what its consumer
continues. MongoDB commands become spans through the pymongo instrumentation.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from opentelemetry import trace
from opentelemetry.instrumentation.pymongo import PymongoInstrumentor
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import Span, SpanKind, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = [
    "Span",
    "SpanKind",
    "active_provider",
    "configure",
    "enabled",
    "open_span",
    "record",
    "span",
    "traceparent_of",
    "within",
]

_PROPAGATOR: Final = TraceContextTextMapPropagator()
_NO_SPAN: Final = contextlib.nullcontext(None)


@dataclass
class _Tracing:
    """What is active; a tracer of None (tracing off) is all the hot path looks at."""

    tracer: Tracer | None = None
    provider: TracerProvider | None = None
    pymongo: PymongoInstrumentor | None = None


_active: Final = _Tracing()


def enabled() -> bool:
    return _active.tracer is not None


def active_provider() -> TracerProvider | None:
    return _active.provider


def configure(service_name: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Start the SDK when the environment asks for traces; True when it did."""
    exporters = span_exporters(environ)
    if not exporters:
        return False
    # OTEL_SERVICE_NAME, when set, names the service; the SDK reads it.
    named = {} if environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service_name}
    provider = TracerProvider(resource=Resource.create(named))  # the sampler from OTEL_*
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    activate(provider)
    return True


def activate(provider: TracerProvider) -> None:
    """Trace through `provider` from here on (configure's, or a test's in-memory one)."""
    deactivate()
    _active.provider, _active.tracer = provider, provider.get_tracer("inference")
    # Clients created from here on report their commands as spans.
    _active.pymongo = PymongoInstrumentor()
    _active.pymongo.instrument(tracer_provider=provider)


def deactivate() -> None:
    if _active.pymongo is not None:
        _active.pymongo.uninstrument()
        # The instrumentor is a singleton that keeps the tracer of its first provider for
        # good: forget it, so that a later activation (another test's provider) traces
        # commands to its own.
        _active.pymongo._commandtracer_instance = None
    _active.tracer = _active.provider = _active.pymongo = None


def span(
    name: str,
    *,
    parent: str | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, str | int] | None = None,
) -> contextlib.AbstractContextManager[Span | None]:
    """A span around a block (None while tracing is off): a child of the current span, or of
    the `parent` traceparent an event carried."""
    tracer = _active.tracer
    if tracer is None:
        return _NO_SPAN
    context = _PROPAGATOR.extract({"traceparent": parent}) if parent else None
    return tracer.start_as_current_span(name, context, kind, attributes)


def open_span(
    name: str,
    *,
    parent: str | None,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, str | int] | None = None,
) -> Span | None:
    """A span left open, not made current (one of several a batch holds at once); None while
    tracing is off. `within` makes it current and ends it."""
    tracer = _active.tracer
    if tracer is None:
        return None
    context = _PROPAGATOR.extract({"traceparent": parent}) if parent else None
    return tracer.start_span(name, context, kind, attributes)


def within(opened: Span | None) -> contextlib.AbstractContextManager[object]:
    if opened is None:
        return _NO_SPAN
    return trace.use_span(opened, end_on_exit=True)


def record(
    name: str, *, parent: str | None, start_ns: int, end_ns: int, **attributes: str | int
) -> None:
    """A span measured already (a step the code times anyway, a job's whole life)."""
    tracer = _active.tracer
    if tracer is None:
        return
    context = _PROPAGATOR.extract({"traceparent": parent}) if parent else None
    tracer.start_span(name, context, start_time=start_ns, attributes=attributes).end(end_ns)


def traceparent_of(opened: Span | None = None) -> str | None:
    """The W3C traceparent of `opened` (or of the current span) for an event to carry;
    None without a valid one."""
    carrier: dict[str, str] = {}
    target = trace.set_span_in_context(opened) if opened is not None else None
    _PROPAGATOR.inject(carrier, target)
    return carrier.get("traceparent")


def span_exporters(environ: Mapping[str, str]) -> list[SpanExporter]:
    """The exporters the environment names; none when it asks for no traces."""
    if environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return []
    endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    names = environ.get("OTEL_TRACES_EXPORTER") or ("otlp" if endpoint else "none")
    exporters: list[SpanExporter] = []
    for name in (n.strip() for n in names.split(",")):
        if name == "otlp":
            exporters.append(_otlp(environ))
        elif name == "console":
            exporters.append(ConsoleSpanExporter())
        elif name not in ("none", ""):
            raise ValueError(f"OTEL_TRACES_EXPORTER: {name!r} is not otlp, console or none")
    return exporters


def _otlp(environ: Mapping[str, str]) -> SpanExporter:
    """The OTLP exporter for the protocol asked for (the specification's default, HTTP)."""
    protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
    )
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter as HttpExporter,
        )

        return HttpExporter()
    raise ValueError(f"OTEL_EXPORTER_OTLP_PROTOCOL: {protocol!r} is not grpc or http/protobuf")
