"""The CloudEvents the job service emits, built once and kept in the job's outbox.

An outbox entry holds the event in structured JSON, so what the relay publishes (after a
crash, possibly twice) is byte-for-byte the event that was decided with the state change
(with OpenTelemetry on, but for its `traceparent`: the relay's span, which the consumer
continues).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final

from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.formats.json import JSONFormat

from inference_common.events import EventType, new_event
from inference_service.domain.clock import iso

if TYPE_CHECKING:
    from inference_service.domain.job import Job

SOURCE: Final = "/inference-service"
FAILED_BY: Final = "inference-service"
_FORMAT: Final = JSONFormat()


class Channel(StrEnum):
    """The AsyncAPI channel an event belongs to; settings map it to a topic."""

    JOBS = "jobs"
    RESULTS = "results"


@dataclass(frozen=True)
class OutboxEvent:
    id: str
    type: EventType
    channel: Channel
    ce: str

    @classmethod
    def wrap(cls, event: BaseCloudEvent, channel: Channel = Channel.JOBS) -> OutboxEvent:
        return cls(
            id=str(event.get_id()),
            type=EventType(event.get_type()),
            channel=channel,
            ce=_FORMAT.write(event).decode(),
        )

    def to_document(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type.value,
            "channel": self.channel.value,
            "ce": self.ce,
        }

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> OutboxEvent:
        return cls(
            id=str(document["id"]),
            type=EventType(document["type"]),
            channel=Channel(document["channel"]),
            ce=str(document["ce"]),
        )

    def cloudevent(self) -> BaseCloudEvent:
        return _FORMAT.read(None, self.ce)

    @property
    def traceparent(self) -> str | None:
        traceparent = json.loads(self.ce).get("traceparent")
        return str(traceparent) if traceparent else None

    def continuing(self, traceparent: str) -> OutboxEvent:
        """The same event, continuing another span of its trace."""
        return replace(self, ce=json.dumps({**json.loads(self.ce), "traceparent": traceparent}))


def created(job: Job, traceparent: str, callback: dict[str, str] | None = None) -> OutboxEvent:
    data: dict[str, Any] = {
        "job_id": job.id,
        "name": job.name,
        "model": job.model,
        "task": job.task,
        "options": job.options,
        "owner": job.owner,
        "status": "NEW",
        "image": job.image.claim_check() if job.image else None,
        "created_at": iso(job.created_at),
    }
    if callback is not None:
        data["callback"] = callback
    event = new_event(
        EventType.CREATED,
        SOURCE,
        job.id,
        data,
        traceparent=traceparent,
        dataref=job.image.uri if job.image else None,
        time=job.created_at,
    )
    return OutboxEvent.wrap(event)


@dataclass(frozen=True)
class Execution:
    """One attempt at running a job: what the executor is asked and by when."""

    execution_id: str
    attempt: int
    deadline: datetime

    @classmethod
    def next(cls, attempt: int, deadline: datetime) -> Execution:
        return cls(uuid.uuid4().hex, attempt, deadline)


def execution_requested(
    job: Job, execution: Execution, at: datetime, traceparent: str
) -> OutboxEvent:
    assert job.image is not None, "only a job with its image is executed"
    data = {
        "job_id": job.id,
        "execution_id": execution.execution_id,
        "attempt": execution.attempt,
        "model": job.model,
        "task": job.task,
        "options": job.options,
        "image": job.image.claim_check(),
        "deadline": iso(execution.deadline),
    }
    event = new_event(
        EventType.EXECUTION_REQUESTED,
        SOURCE,
        job.id,
        data,
        traceparent=traceparent,
        dataref=job.image.uri,
        time=at,
    )
    return OutboxEvent.wrap(event)


def cancelled(job_id: str, reason: str, at: datetime, traceparent: str) -> OutboxEvent:
    data = {"job_id": job_id, "reason": reason, "cancelled_at": iso(at)}
    event = new_event(EventType.CANCELLED, SOURCE, job_id, data, traceparent=traceparent, time=at)
    return OutboxEvent.wrap(event)


def deleted(job_id: str, at: datetime, traceparent: str) -> OutboxEvent:
    data = {"job_id": job_id, "deleted_at": iso(at)}
    event = new_event(EventType.DELETED, SOURCE, job_id, data, traceparent=traceparent, time=at)
    return OutboxEvent.wrap(event)


def deadline_failed(
    job_id: str, execution_id: str, attempt: int, at: datetime, traceparent: str
) -> OutboxEvent:
    """The job service gives up on a job whose executions all missed their deadline."""
    data = {
        "job_id": job_id,
        "execution_id": execution_id,
        "attempt": attempt,
        "failed_by": FAILED_BY,
        "error": {
            "code": "deadline_exceeded",
            "message": f"no result before the deadline of attempt {attempt}",
            "retryable": False,
        },
        "failed_at": iso(at),
    }
    event = new_event(EventType.FAILED, SOURCE, job_id, data, traceparent=traceparent, time=at)
    # `failed` belongs to the results channel, next to the executors' own failures.
    return OutboxEvent.wrap(event, Channel.RESULTS)
