"""The executor's events: `job.started.v1`, `job.completed.v1`, `job.failed.v1`."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from executor_service.errors import JobFailure
from executor_service.jobs import Execution
from inference_common.events import EventType, KafkaRecord, new_event, to_record

SOURCE: Final = "/executor-service"


def _timestamp(moment: datetime) -> str:
    return moment.isoformat()


def _record(
    event_type: EventType, execution: Execution, data: dict[str, Any], traceparent: str
) -> KafkaRecord:
    event = new_event(
        event_type, SOURCE, execution.job_id, {**execution.ids(), **data}, traceparent=traceparent
    )
    return to_record(event)


def started(execution: Execution, executor: str, at: datetime, traceparent: str) -> KafkaRecord:
    data = {"executor": executor, "started_at": _timestamp(at)}
    return _record(EventType.STARTED, execution, data, traceparent)


def completed(
    execution: Execution,
    executor: str,
    *,
    model: str,
    result: dict[str, Any],
    timings: dict[str, float],
    at: datetime,
    traceparent: str,
) -> KafkaRecord:
    data = {
        "executor": executor,
        "model": model,
        "result": result,
        "timings": timings,
        "completed_at": _timestamp(at),
    }
    return _record(EventType.COMPLETED, execution, data, traceparent)


def failed(
    execution: Execution, executor: str, failure: JobFailure, at: datetime, traceparent: str
) -> KafkaRecord:
    data = {
        "failed_by": executor,
        "error": {
            "code": failure.code.value,
            "message": failure.message,
            "retryable": failure.retryable,
        },
        "failed_at": _timestamp(at),
    }
    return _record(EventType.FAILED, execution, data, traceparent)
