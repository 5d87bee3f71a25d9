from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from inference_common.events import EventType, to_record
from simulator.watch import (
    ReorderBuffer,
    WatchOptions,
    message_time,
    parse_types,
    render_message,
)
from tests.unit.simulator import job_events as ev


@dataclass
class FakeMessage:
    """The part of confluent_kafka.Message the watcher reads."""

    value_: bytes | None
    headers_: Any = None
    key_: bytes | None = None
    topic_: str = "inference.jobs"
    partition_: int = 2
    offset_: int = 15
    timestamp_: tuple[int, int] = field(default=(1, 1_795_000_000_000))

    def value(self) -> bytes | None:
        return self.value_

    def headers(self) -> Any:
        return self.headers_

    def key(self) -> bytes | None:
        return self.key_

    def topic(self) -> str:
        return self.topic_

    def partition(self) -> int:
        return self.partition_

    def offset(self) -> int:
        return self.offset_

    def timestamp(self) -> tuple[int, int]:
        return self.timestamp_


def kafka_message(
    event_type: EventType, data: dict[str, Any], job_id: str = ev.JOB_ID
) -> FakeMessage:
    record = to_record(ev.event(event_type, data, job_id=job_id))
    return FakeMessage(record.value, record.headers, record.key)


OPTIONS = WatchOptions(tz=UTC)


def test_types_are_named_by_their_verb() -> None:
    assert parse_types("created, completed") == {EventType.CREATED, EventType.COMPLETED}
    assert parse_types("execution-requested") == {EventType.EXECUTION_REQUESTED}
    with pytest.raises(ValueError, match="unknown event type finished; choose from created"):
        parse_types("finished,created")
    with pytest.raises(ValueError):
        parse_types(",")


def test_an_event_renders_with_its_event_time() -> None:
    rendered = render_message(kafka_message(EventType.STARTED, ev.started()), OPTIONS)
    assert rendered is not None
    when, text = rendered
    assert when == ev.T0
    assert (
        text.plain == "12:00:01.123 Inference job (id: 3f2a9c1e…) started: RUNNING on host-a:4242"
    )


def test_garbage_becomes_a_warning_stamped_with_the_kafka_time() -> None:
    rendered = render_message(FakeMessage(b"\x00garbage", [("x", b"y")]), OPTIONS)
    assert rendered is not None
    when, text = rendered
    assert when == datetime.fromtimestamp(1_795_000_000, UTC)
    assert text.plain.startswith(
        "11:06:40.000 warning: skipped a message on inference.jobs [partition 2, offset 15]: "
        "not a CloudEvent"
    )


def test_an_event_of_ours_with_broken_data_is_a_warning_too() -> None:
    data = ev.completed()
    del data["result"]
    rendered = render_message(kafka_message(EventType.COMPLETED, data), OPTIONS)
    assert rendered is not None
    assert "skipped" in rendered[1].plain
    assert "job.completed.v1 with unexpected data (KeyError('result'))" in rendered[1].plain


def test_filters_by_type_and_job_prefix() -> None:
    only_completed = WatchOptions(types=frozenset({EventType.COMPLETED}), tz=UTC)
    assert render_message(kafka_message(EventType.STARTED, ev.started()), only_completed) is None
    assert render_message(kafka_message(EventType.COMPLETED, ev.completed()), only_completed)

    one_job = WatchOptions(job_prefixes=("3f2a",), tz=UTC)
    other = kafka_message(EventType.DELETED, ev.deleted(ev.OTHER_JOB_ID), job_id=ev.OTHER_JOB_ID)
    assert render_message(other, one_job) is None
    assert render_message(kafka_message(EventType.DELETED, ev.deleted()), one_job)
    # A stray message belongs to no job and no type: a filtered view leaves it out.
    assert render_message(FakeMessage(b"junk"), one_job) is None


def test_message_without_a_timestamp_gets_now() -> None:
    before = datetime.now(UTC)
    assert message_time(FakeMessage(b"", timestamp_=(0, 0))) >= before


def test_reorder_buffer_holds_items_for_the_window_then_releases_them_in_time_order() -> None:
    buffer: ReorderBuffer[str] = ReorderBuffer(window_s=0.5)
    buffer.push(ev.at(2), "started", now=10.0)
    buffer.push(ev.at(1), "requested", now=10.1)  # from the other topic, read later
    buffer.push(ev.at(3), "completed", now=10.2)
    assert buffer.pop_ready(10.4) == []
    # The oldest event arrived last-but-one; it goes first once it has waited its window.
    assert buffer.pop_ready(10.6) == ["requested", "started"]
    assert buffer.pop_ready(10.7) == ["completed"]
    assert buffer.pop_ready(99) == []


def test_reorder_buffer_drains_everything_in_order() -> None:
    buffer: ReorderBuffer[str] = ReorderBuffer(window_s=60)
    for label, seconds in (("b", 2), ("a", 1), ("a2", 1), ("c", 3)):
        buffer.push(ev.at(seconds), label, now=0)
    assert buffer.drain() == ["a", "a2", "b", "c"]  # ties keep arrival order
    assert buffer.drain() == []


def test_a_zero_window_releases_at_once() -> None:
    buffer: ReorderBuffer[str] = ReorderBuffer(window_s=0)
    buffer.push(ev.at(1), "x", now=5)
    assert buffer.pop_ready(5) == ["x"]
