"""The events the job service emits match the contract (openapi/asyncapi.yaml)."""

from datetime import UTC, datetime, timedelta
from typing import Any

from inference_common.events import Envelope, EventType, from_record, new_event, to_record
from inference_service.domain import events
from inference_service.domain.events import Channel, Execution, OutboxEvent
from inference_service.domain.job import Job
from inference_service.domain.jobs import ImageInfo
from inference_service.service_layer.live import ends_job_stream
from tests.contracts import validate_kafka_event
from tests.unit.service.builders import creation

JOB = "0123456789abcdef0123456789abcdef"
AT = datetime(2026, 11, 23, 12, 0, 0, 123000, tzinfo=UTC)
TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def job(with_image: bool = True) -> Job:
    image = ImageInfo("image/jpeg", 100, 4, 3, "a" * 64).stored(
        "blob://images/0123456789abcdef01234567"
    )
    return creation(JOB, image=image if with_image else None, at=AT).after


def published(event: OutboxEvent) -> tuple[dict[str, Any], dict[str, Any]]:
    """Through the outbox document and back, as the relay publishes it."""
    restored = OutboxEvent.from_document(event.to_document())
    record = to_record(restored.cloudevent())
    data = validate_kafka_event(record.headers, record.value)
    headers = {k: v.decode() for k, v in record.headers}
    assert record.key == JOB.encode()
    return headers, data


def test_created_with_and_without_image() -> None:
    headers, data = published(events.created(job(), TRACE))
    assert headers["ce_type"] == EventType.CREATED.value
    assert headers["ce_source"] == "/inference-service"
    assert headers["ce_traceparent"] == TRACE
    assert headers["ce_dataref"] == "blob://images/0123456789abcdef01234567"
    assert data["image"]["uri"] == headers["ce_dataref"]
    assert data["owner"] == "alice" and data["status"] == "NEW"
    headers, data = published(events.created(job(with_image=False), TRACE))
    assert data["image"] is None and "ce_dataref" not in headers


def test_created_announces_the_jobs_callback_when_it_has_one() -> None:
    callback = {"url": "https://hooks.example/in", "events": "terminal"}
    _headers, data = published(events.created(job(), TRACE, callback))
    assert data["callback"] == callback
    _headers, data = published(events.created(job(), TRACE))
    assert "callback" not in data


def test_execution_requested_points_at_the_image() -> None:
    execution = Execution.next(2, AT + timedelta(seconds=60))
    headers, data = published(events.execution_requested(job(), execution, AT, TRACE))
    assert data["attempt"] == 2 and data["execution_id"] == execution.execution_id
    assert data["deadline"] == "2026-11-23T12:01:00.123Z"
    assert headers["ce_dataref"] == data["image"]["uri"]


def test_cancelled_and_deleted() -> None:
    _, data = published(events.cancelled(JOB, "changed my mind", AT, TRACE))
    assert data["reason"] == "changed my mind"
    _, data = published(events.deleted(JOB, AT, TRACE))
    assert data["deleted_at"] == "2026-11-23T12:00:00.123Z"


def test_deadline_failure_goes_to_the_results_channel() -> None:
    event = events.deadline_failed(JOB, "b" * 32, 3, AT, TRACE)
    assert event.channel is Channel.RESULTS
    _, data = published(event)
    assert data["failed_by"] == "inference-service"
    assert data["error"] == {
        "code": "deadline_exceeded",
        "message": "no result before the deadline of attempt 3",
        "retryable": False,
    }


def test_a_republished_outbox_entry_is_byte_identical() -> None:
    event = events.deleted(JOB, AT, TRACE)
    first = to_record(OutboxEvent.from_document(event.to_document()).cloudevent())
    again = to_record(OutboxEvent.from_document(event.to_document()).cloudevent())
    assert first == again


def test_which_events_end_a_job_stream() -> None:
    def envelope(event_type: EventType, data: dict[str, Any]) -> Envelope:
        record = to_record(new_event(event_type, "/executor-service", JOB, {"job_id": JOB, **data}))
        headers: list[tuple[str, bytes | None]] = list(record.headers)
        return from_record(record.value, headers, record.key)

    failure = {"execution_id": "c" * 32, "failed_by": "x", "failed_at": "2026-11-23T12:00:00Z"}
    retryable = {
        **failure,
        "attempt": 1,
        "error": {"code": "model_error", "message": "m", "retryable": True},
    }
    final = {
        **failure,
        "attempt": 3,
        "error": {"code": "model_error", "message": "m", "retryable": True},
    }
    assert ends_job_stream(envelope(EventType.COMPLETED, {}), 3)
    assert ends_job_stream(envelope(EventType.DELETED, {}), 3)
    assert not ends_job_stream(envelope(EventType.STARTED, {}), 3)
    assert not ends_job_stream(envelope(EventType.FAILED, retryable), 3)
    assert ends_job_stream(envelope(EventType.FAILED, final), 3)


def test_an_event_continuing_another_span_is_the_same_event_but_its_traceparent() -> None:
    created = events.created(job(), TRACE)
    relayed = "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01"
    moved = created.continuing(relayed)
    assert created.traceparent == TRACE and moved.traceparent == relayed
    before, after = published(created), published(moved)
    assert after[0].pop("ce_traceparent") == relayed
    assert before[0].pop("ce_traceparent") == TRACE
    assert (moved.id, moved.type, after) == (created.id, created.type, before)
