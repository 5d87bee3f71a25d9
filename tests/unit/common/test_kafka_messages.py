"""What every consumer does with a message: its headers, its event, its dead-letter copy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from inference_common.contracts import EventSchemas
from inference_common.events import EventType, InvalidEvent, new_event, to_record
from inference_common.kafka import dead_letter_copy, decode, header_pairs, message_position
from tests.contracts import ROOT

JOB_ID = "0123456789abcdef0123456789abcdef"


@dataclass
class FakeMessage:
    """A confluent_kafka.Message as a consumer sees it."""

    _value: bytes | None
    _headers: Any
    _key: bytes | None = b"k"
    _topic: str | None = "inference.results"
    _partition: int | None = 2
    _offset: int | None = 41

    def topic(self) -> str | None:
        return self._topic

    def partition(self) -> int | None:
        return self._partition

    def offset(self) -> int | None:
        return self._offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def headers(self) -> Any:
        return self._headers


def test_headers_become_byte_pairs_whatever_the_client_handed_over() -> None:
    assert header_pairs(FakeMessage(b"", None)) == []
    assert header_pairs(FakeMessage(b"", [("a", "x"), ("b", None)])) == [("a", b"x"), ("b", None)]
    assert header_pairs(FakeMessage(b"", {"a": b"y"})) == [("a", b"y")]


def test_a_message_decodes_to_its_event() -> None:
    data = {"job_id": JOB_ID, "deleted_at": "2026-11-23T12:00:00Z"}
    record = to_record(new_event(EventType.DELETED, "/inference-service", JOB_ID, data))
    envelope = decode(FakeMessage(record.value, record.headers, record.key))
    assert (envelope.type, envelope.subject, envelope.data) == (EventType.DELETED, JOB_ID, data)
    with pytest.raises(InvalidEvent):
        decode(FakeMessage(b"not an event", []))


def test_the_dead_letter_copy_keeps_the_original_and_says_why_and_where() -> None:
    key, value, headers = dead_letter_copy(FakeMessage(b"v", [("a", "1")]), "broken")
    named = dict(headers)
    assert (key, value, headers[0]) == (b"k", b"v", ("a", b"1"))
    assert (named["dlq_error"], named["dlq_topic"]) == (b"broken", b"inference.results")
    assert (named["dlq_partition"], named["dlq_offset"]) == (b"2", b"41")


def test_an_error_event_has_no_position() -> None:
    with pytest.raises(ValueError, match="no position"):
        message_position(FakeMessage(None, None, _topic=None, _offset=None))


def test_the_schemas_report_the_first_problem_and_pass_a_valid_event() -> None:
    schemas = EventSchemas.from_dir(ROOT / "openapi")
    valid = {"job_id": JOB_ID, "deleted_at": "2026-11-23T12:00:00Z"}
    assert schemas.problems(EventType.DELETED, valid) == []
    assert schemas.problems(EventType.DELETED, {**valid, "deleted_at": "2026-13-01T00:00:00Z"}) == [
        "data.deleted_at must be date-time"
    ]
    assert schemas.problems("Execution", {"job_id": JOB_ID, "execution_id": "x", "attempt": 1})
