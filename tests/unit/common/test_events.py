import json

import pytest
from cloudevents.core.bindings import kafka as kafka_binding
from cloudevents.core.formats.json import JSONFormat

from inference_common.events import (
    EventType,
    InvalidEvent,
    from_record,
    new_event,
    to_record,
)
from inference_common.tracecontext import Span, child_traceparent, new_traceparent, trace_id
from tests.contracts import validate_kafka_event

JOB_ID = "0123456789abcdef0123456789abcdef"


def deleted_event() -> dict[str, str]:
    return {"job_id": JOB_ID, "deleted_at": "2026-11-23T12:00:00Z"}


def test_binary_record_round_trips_and_matches_the_contract() -> None:
    event = new_event(EventType.DELETED, "/inference-service", JOB_ID, deleted_event())
    record = to_record(event)

    assert record.key == JOB_ID.encode()
    data = validate_kafka_event(record.headers, record.value)
    assert data == deleted_event()
    envelope = from_record(record.value, record.headers, record.key)
    assert envelope.type is EventType.DELETED
    assert envelope.subject == JOB_ID
    assert envelope.id == event.get_attributes()["id"]
    assert envelope.time.tzinfo is not None


def test_structured_mode_is_accepted() -> None:
    event = new_event(EventType.DELETED, "/inference-service", JOB_ID, deleted_event())
    message = kafka_binding.to_structured(event, JSONFormat())
    envelope = from_record(message.value, list(message.headers.items()))
    assert envelope.type is EventType.DELETED
    assert envelope.data == deleted_event()


def test_dataschema_names_the_schema_of_the_type() -> None:
    assert EventType.COMPLETED.dataschema == "urn:cvinference:schema:job.completed.v1"
    event = new_event(
        EventType.CREATED, "/inference-service", JOB_ID, {}, dataref="blob://images/1"
    )
    attributes = event.get_attributes()
    assert attributes["dataschema"] == EventType.CREATED.dataschema
    assert attributes["dataref"] == "blob://images/1"
    assert attributes["partitionkey"] == JOB_ID


@pytest.mark.parametrize(
    ("value", "headers", "reason"),
    [
        (b"\x00\xffgarbage", [], "not a CloudEvent"),
        (b"{}", [("content-type", b"application/cloudevents+json")], "not a CloudEvent"),
        (
            json.dumps({"a": 1}).encode(),
            [
                ("ce_specversion", b"1.0"),
                ("ce_id", b"1"),
                ("ce_type", b"com.example.other"),
                ("ce_source", b"/x"),
                ("ce_subject", JOB_ID.encode()),
                ("ce_time", b"2026-11-23T12:00:00Z"),
                ("content-type", b"application/json"),
            ],
            "unknown event type",
        ),
        (
            b"[1, 2]",
            [
                ("ce_specversion", b"1.0"),
                ("ce_id", b"1"),
                ("ce_type", EventType.DELETED.value.encode()),
                ("ce_source", b"/x"),
                ("ce_subject", JOB_ID.encode()),
                ("ce_time", b"2026-11-23T12:00:00Z"),
                ("content-type", b"application/json"),
            ],
            "not a JSON object",
        ),
        (
            b"{}",
            [
                ("ce_specversion", b"1.0"),
                ("ce_id", b"1"),
                ("ce_type", EventType.DELETED.value.encode()),
                ("ce_source", b"/x"),
                ("content-type", b"application/json"),
            ],
            "missing attributes: subject",
        ),
    ],
)
def test_bad_messages_raise_invalid_event(
    value: bytes, headers: list[tuple[str, bytes]], reason: str
) -> None:
    with pytest.raises(InvalidEvent, match=reason):
        from_record(value, headers)  # type: ignore[arg-type]


def test_child_traceparent_keeps_the_trace_and_changes_the_span() -> None:
    parent = new_traceparent()
    child = child_traceparent(parent)
    assert trace_id(child) == trace_id(parent)
    assert child.split("-")[2] != parent.split("-")[2]
    assert trace_id(child_traceparent("not a traceparent")) is not None


def test_a_span_is_a_child_of_the_caller_else_continues_the_given_trace() -> None:
    caller, job = new_traceparent(), new_traceparent()
    span = Span(caller)
    made = span.traceparent(continuing=job)
    assert trace_id(made) == trace_id(caller) and made != caller
    assert span.traceparent() == made  # one span per request, however often asked
    assert trace_id(Span(None).traceparent(continuing=job)) == trace_id(job)
    assert trace_id(Span("garbage").traceparent(continuing=job)) == trace_id(job)
    assert trace_id(Span().traceparent()) not in (None, trace_id(job))


def test_the_all_zero_trace_is_no_trace() -> None:
    assert trace_id("00-" + "0" * 32 + "-" + "1" * 16 + "-01") is None
