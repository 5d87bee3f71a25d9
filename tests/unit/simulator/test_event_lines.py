from datetime import UTC
from typing import Any

import pytest

from inference_common.events import Envelope, EventType, KafkaRecord, from_record, to_record
from simulator.event_lines import (
    EventLine,
    clock,
    describe,
    describe_result,
    elapsed_ms,
    short_id,
    warning_line,
)
from tests.contracts import validate_kafka_event
from tests.unit.simulator import job_events as ev

PREFIX = "12:00:01.123 Inference job (id: 3f2a9c1e…)"


def decoded(record: KafkaRecord) -> Envelope:
    headers: list[tuple[str, bytes | None]] = list(record.headers)
    return from_record(record.value, headers, record.key)


def line_for(event_type: EventType, data: dict[str, Any], seconds: float = 0) -> str:
    record = to_record(ev.event(event_type, data, seconds))
    validate_kafka_event(record.headers, record.value)  # the samples obey the contract
    return describe(decoded(record)).plain(UTC)


@pytest.mark.parametrize(
    ("event_type", "data", "expected"),
    [
        (EventType.CREATED, ev.created(), "created: NEW [model mobilenet-v2-imagenet-quant]"),
        (
            EventType.EXECUTION_REQUESTED,
            ev.execution_requested(),
            "execution requested: QUEUED (attempt 1)",
        ),
        (
            EventType.EXECUTION_REQUESTED,
            ev.execution_requested(attempt=2),
            "execution requested: QUEUED (attempt 2)",
        ),
        (EventType.STARTED, ev.started(), "started: RUNNING on host-a:4242"),
        (EventType.STARTED, ev.started(attempt=3), "started: RUNNING on host-a:4242 (attempt 3)"),
        (EventType.COMPLETED, ev.completed(), "completed: DONE Egyptian cat 0.82 (23 ms)"),
        (
            EventType.COMPLETED,
            ev.completed(result=ev.detection(["person", "kite", "person", "person", "kite"])),
            "completed: DONE detected 3 person, 2 kite (23 ms)",
        ),
        (
            EventType.COMPLETED,
            ev.completed(result=ev.detection([]), timings={"total": 41.6, "inference": 30}),
            "completed: DONE detected nothing (42 ms)",
        ),
        (EventType.COMPLETED, ev.completed(timings={}), "completed: DONE Egyptian cat 0.82"),
        (
            EventType.FAILED,
            ev.failed(),
            "failed: FAILED image_unreadable: cannot identify image file",
        ),
        (
            EventType.FAILED,
            ev.failed(code="model_error", retryable=True),
            "failed: model_error: cannot identify image file (attempt 1, retryable)",
        ),
        (EventType.CANCELLED, ev.cancelled(), "cancelled: CANCELLED (client request)"),
        (EventType.CANCELLED, ev.cancelled(reason=""), "cancelled: CANCELLED"),
        (EventType.DELETED, ev.deleted(), "deleted"),
        (EventType.PURGED, ev.purged(), "purged: image removed"),
        (
            EventType.PURGED,
            ev.purged(removed=("image", "result")),
            "purged: image and result removed",
        ),
    ],
)
def test_every_event_type_reads_as_one_line(
    event_type: EventType, data: dict[str, Any], expected: str
) -> None:
    assert line_for(event_type, data) == f"{PREFIX} {expected}"


def test_every_event_type_has_a_line() -> None:
    samples = {
        EventType.CREATED: ev.created(),
        EventType.EXECUTION_REQUESTED: ev.execution_requested(),
        EventType.STARTED: ev.started(),
        EventType.COMPLETED: ev.completed(),
        EventType.FAILED: ev.failed(),
        EventType.CANCELLED: ev.cancelled(),
        EventType.DELETED: ev.deleted(),
        EventType.PURGED: ev.purged(),
    }
    assert set(samples) == set(EventType)  # a new type must get a line (and a case above)
    for event_type, data in samples.items():
        assert line_for(event_type, data).startswith(PREFIX)


def test_data_that_breaks_the_contract_raises_instead_of_printing_nonsense() -> None:
    broken = ev.completed()
    del broken["result"]
    record = to_record(ev.event(EventType.COMPLETED, broken))
    with pytest.raises(KeyError):
        describe(decoded(record))


def test_time_is_shown_in_the_given_zone_with_milliseconds() -> None:
    from zoneinfo import ZoneInfo

    assert clock(ev.T0, UTC) == "12:00:01.123"
    assert clock(ev.T0, ZoneInfo("Europe/Berlin")) == "13:00:01.123"


def test_ids_are_shortened_unless_asked() -> None:
    assert short_id(ev.JOB_ID) == "3f2a9c1e…"
    assert short_id(ev.JOB_ID, full=True) == ev.JOB_ID
    assert short_id("abc") == "abc"
    line = EventLine(ev.T0, ev.JOB_ID, "deleted")
    assert ev.JOB_ID in line.plain(UTC, full_ids=True)


def test_status_is_coloured_in_the_styled_line() -> None:
    text = EventLine(ev.T0, ev.JOB_ID, "completed", "DONE", "x").styled(UTC)
    styles = {text.plain[span.start : span.end]: str(span.style) for span in text.spans}
    assert styles["DONE"] == "bold green"
    assert styles["completed"] == "bold"


def test_result_descriptions() -> None:
    assert describe_result(ev.classification()) == "Egyptian cat 0.82"
    assert describe_result({"task": "classification", "classes": []}) == "no class"
    assert (
        describe_result(ev.detection(["kite", "person", "person"])) == "detected 2 person, 1 kite"
    )
    sentence = "Seven people and three kites (scene: seashore)."
    assert describe_result({"task": "describe", "description": sentence}) == sentence


def test_elapsed_prefers_the_total_over_the_sum_of_steps() -> None:
    executor = {"fetch_ms": 3.1, "preprocess_ms": 1.0, "inference_ms": 14.4, "total_ms": 18.7}
    assert elapsed_ms(executor) == 18.7
    assert elapsed_ms({"total": 10, "decode": 4, "inference": 6}) == 10
    assert elapsed_ms({"decode": 4, "inference": 6.5}) == 10.5


def test_warning_line_names_where_the_message_was() -> None:
    text = warning_line(ev.T0, "a message on t [partition 1, offset 7]", "not JSON", UTC)
    assert (
        text.plain
        == "12:00:01.123 warning: skipped a message on t [partition 1, offset 7]: not JSON"
    )
