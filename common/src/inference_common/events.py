"""The event contract: CloudEvents 1.0 types, envelopes and their Kafka encoding.

openapi/asyncapi.yaml describes every type here, with a JSON Schema for each one's data
(`components.schemas`, loaded by `inference_common.contracts`); tests validate every emitted
event against it. A job's events are keyed by its id, so they stay in order
on one partition.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings import kafka as kafka_binding
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from inference_common.tracecontext import new_traceparent

SPECVERSION: Final = "1.0"
JSON: Final = "application/json"
SCHEMA_BASE: Final = "urn:cvinference:schema:"
# A dead-letter copy stays under this many bytes (key, value and headers): well below the
# producer's and the broker's default limit of about 1 MB, whatever the original weighed.
DEAD_LETTER_MAX_BYTES: Final = 900_000
_FORMAT: Final = JSONFormat()


class EventType(StrEnum):
    """Reverse-DNS, versioned. The job service emits the first five, the executor the rest."""

    CREATED = "io.cvinference.job.created.v1"
    EXECUTION_REQUESTED = "io.cvinference.job.execution_requested.v1"
    CANCELLED = "io.cvinference.job.cancelled.v1"
    DELETED = "io.cvinference.job.deleted.v1"
    PURGED = "io.cvinference.job.purged.v1"
    STARTED = "io.cvinference.job.started.v1"
    COMPLETED = "io.cvinference.job.completed.v1"
    FAILED = "io.cvinference.job.failed.v1"

    @property
    def short(self) -> str:
        """`job.created.v1`: the name of its JSON Schema in openapi/asyncapi.yaml."""
        return self.value.removeprefix("io.cvinference.")

    @property
    def dataschema(self) -> str:
        return SCHEMA_BASE + self.short


class InvalidEvent(ValueError):
    """A Kafka message that is not a CloudEvent of ours; it goes to the dead-letter topic."""


@dataclass(frozen=True)
class Envelope:
    """The attributes every consumer relies on, plus the data, decoded once."""

    id: str
    type: EventType
    source: str
    subject: str
    time: datetime
    data: dict[str, Any]
    traceparent: str | None = None
    dataref: str | None = None


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_event(
    event_type: EventType,
    source: str,
    job_id: str,
    data: dict[str, Any],
    *,
    traceparent: str | None = None,
    dataref: str | None = None,
    event_id: str | None = None,
    time: datetime | None = None,
) -> CloudEvent:
    """Build an event with every attribute our contract requires."""
    attributes: dict[str, Any] = {
        "specversion": SPECVERSION,
        "id": event_id or str(uuid.uuid4()),
        "type": event_type.value,
        "source": source,
        "subject": job_id,
        "time": time or utcnow(),
        "datacontenttype": JSON,
        "dataschema": event_type.dataschema,
        "partitionkey": job_id,
        "traceparent": traceparent or new_traceparent(),
    }
    if dataref is not None:
        attributes["dataref"] = dataref
    return CloudEvent(attributes=attributes, data=data)


@dataclass(frozen=True)
class KafkaRecord:
    """What confluent-kafka's produce() takes."""

    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


def to_record(event: BaseCloudEvent) -> KafkaRecord:
    """Binary content mode: attributes in `ce_*` headers, data as the value."""
    message = kafka_binding.to_binary(event, _FORMAT)
    key = message.key.encode() if isinstance(message.key, str) else (message.key or b"")
    return KafkaRecord(key=key, value=message.value, headers=list(message.headers.items()))


def from_record(
    value: bytes | None, headers: list[tuple[str, bytes | None]] | None, key: bytes | None = None
) -> Envelope:
    """Decode a binary- or structured-mode message (told apart by content-type)."""
    header_map = {name.lower(): raw or b"" for name, raw in headers or []}
    message = kafka_binding.KafkaMessage(headers=header_map, key=key, value=value or b"")
    try:
        event = kafka_binding.from_kafka(message, _FORMAT)
    except Exception as exc:  # the SDK raises several unrelated types for bad input
        raise InvalidEvent(f"not a CloudEvent: {exc}") from exc
    return to_envelope(event)


def to_envelope(event: BaseCloudEvent) -> Envelope:
    attributes = event.get_attributes()
    problems = [
        name
        for name in ("id", "type", "source", "subject", "time")
        if attributes.get(name) in (None, "")
    ]
    if problems:
        raise InvalidEvent(f"missing attributes: {', '.join(problems)}")
    try:
        event_type = EventType(attributes["type"])
    except ValueError as exc:
        raise InvalidEvent(f"unknown event type {attributes['type']!r}") from exc
    data = event.get_data()
    if isinstance(data, bytes | str):
        try:
            data = json.loads(data)
        except ValueError as exc:
            raise InvalidEvent("data is not JSON") from exc
    if not isinstance(data, dict):
        raise InvalidEvent("data is not a JSON object")
    time = attributes["time"]
    if not isinstance(time, datetime):
        raise InvalidEvent("time is not an RFC 3339 timestamp")
    return Envelope(
        id=str(attributes["id"]),
        type=event_type,
        source=str(attributes["source"]),
        subject=str(attributes["subject"]),
        time=time,
        data=data,
        traceparent=attributes.get("traceparent"),
        dataref=attributes.get("dataref"),
    )


def dead_letter_headers(
    error: str, topic: str, partition: int, offset: int
) -> list[tuple[str, bytes]]:
    """Why a message was set aside and where it came from; the value stays byte-identical."""
    return [
        ("dlq_error", error.encode()[:4000]),
        ("dlq_topic", topic.encode()),
        ("dlq_partition", str(partition).encode()),
        ("dlq_offset", str(offset).encode()),
        ("dlq_time", utcnow().isoformat().encode()),
    ]


Headers = list[tuple[str, bytes | None]]


def dead_letter_record(
    key: bytes | None,
    value: bytes | None,
    headers: Headers,
    error: str,
    where: tuple[str, int, int],
) -> tuple[bytes | None, bytes | None, Headers]:
    """The copy for the dead-letter topic: the original, plus why and where from (`where` is
    topic, partition, offset). A message too large to copy whole (the error headers would push
    it over the producer's limit, and a copy that cannot be written would stop the consumer on
    it for good) keeps its first bytes, with its full size and sha256 in `dlq_value_bytes` and
    `dlq_value_sha256`; headers that alone are too large are left out (`dlq_headers_dropped`)."""
    added: Headers = list(dead_letter_headers(error, *where))
    size = _weight(key, added)
    original = _weight(None, headers)
    if size + original + len(value or b"") <= DEAD_LETTER_MAX_BYTES:
        return key, value, [*headers, *added]
    whole = value or b""
    added += [
        ("dlq_value_bytes", str(len(whole)).encode()),
        ("dlq_value_sha256", hashlib.sha256(whole).hexdigest().encode()),
    ]
    if size + original > DEAD_LETTER_MAX_BYTES // 2:
        headers = []
        added.append(("dlq_headers_dropped", str(original).encode()))
    room = DEAD_LETTER_MAX_BYTES - _weight(key, [*headers, *added])
    return key, whole[: max(0, room)], [*headers, *added]


def _weight(key: bytes | None, headers: Sequence[tuple[str, bytes | None]]) -> int:
    return len(key or b"") + sum(len(name) + len(value or b"") + 8 for name, value in headers)
