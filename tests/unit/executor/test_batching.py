from __future__ import annotations

from datetime import UTC, datetime

from executor_service.batching import superseded_requests
from inference_common.events import Envelope, EventType

A, B = "a" * 32, "b" * 32


def envelope(event_type: EventType, job_id: str) -> Envelope:
    return Envelope(
        id="1",
        type=event_type,
        source="/inference-service",
        subject=job_id,
        time=datetime.now(UTC),
        data={},
    )


def test_request_cancelled_later_in_the_batch_is_skipped() -> None:
    batch = [
        envelope(EventType.EXECUTION_REQUESTED, A),
        envelope(EventType.EXECUTION_REQUESTED, B),
        None,  # an invalid message in between changes nothing
        envelope(EventType.CANCELLED, A),
    ]
    assert superseded_requests(batch) == {0}


def test_request_after_the_cancel_still_runs() -> None:
    batch = [envelope(EventType.CANCELLED, A), envelope(EventType.EXECUTION_REQUESTED, A)]
    assert superseded_requests(batch) == set()


def test_deleted_job_is_skipped_too_and_created_is_not_an_end() -> None:
    batch = [
        envelope(EventType.EXECUTION_REQUESTED, A),
        envelope(EventType.EXECUTION_REQUESTED, B),
        envelope(EventType.DELETED, A),
        envelope(EventType.CREATED, B),
    ]
    assert superseded_requests(batch) == {0}
