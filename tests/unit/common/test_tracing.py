"""OpenTelemetry's setup: what the OTEL_* variables switch on, and nothing when none is set."""

from __future__ import annotations

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.trace.export import ConsoleSpanExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from inference_common import tracing

CALLER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
ENDPOINT = "http://127.0.0.1:4318"


def test_nothing_is_exported_unless_asked() -> None:
    assert tracing.span_exporters({}) == []
    assert tracing.span_exporters({"OTEL_SERVICE_NAME": "x", "OTEL_TRACES_SAMPLER": "x"}) == []
    assert tracing.span_exporters({"OTEL_TRACES_EXPORTER": "none"}) == []
    # docker-compose.yaml passes them through empty when they are not set
    assert (
        tracing.span_exporters({"OTEL_EXPORTER_OTLP_ENDPOINT": "", "OTEL_TRACES_EXPORTER": ""})
        == []
    )
    asked = {"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT}
    assert tracing.span_exporters({**asked, "OTEL_SDK_DISABLED": "true"}) == []
    assert tracing.span_exporters({**asked, "OTEL_TRACES_EXPORTER": "none"}) == []
    assert not tracing.configure("test", {})
    assert not tracing.enabled()


def test_an_endpoint_alone_means_otlp_over_http_unless_grpc_is_asked_for() -> None:
    [http] = tracing.span_exporters({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": ENDPOINT})
    assert isinstance(http, HttpExporter)
    [http] = tracing.span_exporters(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_TRACES_EXPORTER": ""}
    )
    assert isinstance(http, HttpExporter)
    [grpc] = tracing.span_exporters(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
    )
    assert isinstance(grpc, GrpcExporter)
    [console] = tracing.span_exporters({"OTEL_TRACES_EXPORTER": "console"})
    assert isinstance(console, ConsoleSpanExporter)


def test_an_exporter_or_protocol_it_does_not_have_is_refused() -> None:
    with pytest.raises(ValueError, match="zipkin"):
        tracing.span_exporters({"OTEL_TRACES_EXPORTER": "zipkin"})
    with pytest.raises(ValueError, match="http/json"):
        tracing.span_exporters(
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}
        )


def test_while_off_the_helpers_do_nothing() -> None:
    with tracing.span("x", parent=CALLER) as span:
        assert span is None
        assert tracing.traceparent_of() is None
    assert tracing.open_span("x", parent=CALLER) is None
    tracing.record("x", parent=CALLER, start_ns=1, end_ns=2)  # no error, nothing kept


def test_a_span_continues_the_traceparent_an_event_carried(
    spans: InMemorySpanExporter,
) -> None:
    with tracing.span("execute", parent=CALLER) as span:
        carried = tracing.traceparent_of(span)
        tracing.record("fetch", parent=None, start_ns=1, end_ns=3)
    opened = tracing.open_span("fold", parent=carried)
    with tracing.within(opened):
        assert tracing.traceparent_of() == tracing.traceparent_of(opened)
    fetch, execute, fold = spans.get_finished_spans()  # in the order they ended
    assert carried == f"00-4bf92f3577b34da6a3ce929d0e0e4736-{execute.context.span_id:016x}-01"
    assert execute.parent is not None and execute.parent.span_id == 0x00F067AA0BA902B7
    assert fetch.parent == execute.context and (fetch.start_time, fetch.end_time) == (1, 3)
    assert fold.parent is not None and fold.parent.span_id == execute.context.span_id
    assert fold.context.trace_id == execute.context.trace_id
