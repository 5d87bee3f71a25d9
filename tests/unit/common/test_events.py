import hashlib
import json

import pytest
from cloudevents.core.bindings import kafka as kafka_binding
from cloudevents.core.formats.json import JSONFormat

from inference_common.events import (
    DEAD_LETTER_MAX_BYTES,
    EventType,
    InvalidEvent,
    dead_letter_record,
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


WHERE = ("inference.jobs", 2, 41)


def test_a_dead_letter_copy_is_the_original_plus_why_and_where() -> None:
    key, value, headers = dead_letter_record(b"k", b"v", [("a", b"1")], "broken", WHERE)
    assert (key, value) == (b"k", b"v")
    assert headers[0] == ("a", b"1")
    named = dict(headers)
    assert named["dlq_error"] == b"broken" and named["dlq_topic"] == b"inference.jobs"
    assert (named["dlq_partition"], named["dlq_offset"]) == (b"2", b"41")
    assert "dlq_value_bytes" not in named


def test_a_message_too_large_to_copy_whole_keeps_its_start_size_and_digest() -> None:
    value = bytes(range(256)) * 4000  # 1,024,000 bytes
    key, copy, headers = dead_letter_record(b"k", value, [("a", b"1")], "huge", WHERE)
    named = dict(headers)
    assert value.startswith(copy) and len(copy) < len(value)
    assert named["dlq_value_bytes"] == b"1024000"
    assert named["dlq_value_sha256"] == hashlib.sha256(value).hexdigest().encode()
    assert named["a"] == b"1"
    weight = len(key) + len(copy) + sum(len(n) + len(v or b"") for n, v in headers)
    assert DEAD_LETTER_MAX_BYTES - 200 < weight <= DEAD_LETTER_MAX_BYTES


def test_headers_too_large_to_copy_are_left_out() -> None:
    headers = [("junk", b"x" * DEAD_LETTER_MAX_BYTES)]
    _, copy, kept = dead_letter_record(None, b"small", headers, "huge headers", WHERE)
    named = dict(kept)
    assert "junk" not in named and int(named["dlq_headers_dropped"]) > DEAD_LETTER_MAX_BYTES
    assert copy == b"small"
