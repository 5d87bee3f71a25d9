"""The mapper: a Job as one MongoDB document, and back.

The document also holds what is not the job's state: its pending events (`outbox`, with the
flag `outbox_pending` the relay's query uses). Field names are the Job's, `id` as `_id`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from inference_service.domain.clock import as_utc
from inference_service.domain.events import OutboxEvent
from inference_service.domain.job import Job, JobError, JobResult, StoredImage
from inference_service.domain.lifecycle import JobStatus
from inference_service.ports import Outbox

Document = dict[str, Any]


def to_document(job: Job, events: tuple[OutboxEvent, ...] = ()) -> Document:
    document = {"_id": job.id, **to_fields({f.name: getattr(job, f.name) for f in _FIELDS})}
    del document["id"]
    document["outbox"] = [event.to_document() for event in events]
    document["outbox_pending"] = bool(events)
    return document


def to_fields(values: Mapping[str, Any]) -> Document:
    """Job attributes as document fields, for `$set`."""
    return {name: _value(value) for name, value in values.items()}


def _value(value: Any) -> Any:
    if isinstance(value, JobStatus):
        return value.value
    if isinstance(value, tuple):
        return list(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return value


def from_document(document: Mapping[str, Any]) -> Job:
    image = document.get("image")
    error = document.get("error")
    result = document.get("result")
    return Job(
        id=str(document["_id"]),
        owner=document["owner"],
        name=document["name"],
        model=document["model"],
        task=document["task"],
        options=dict(document["options"]),
        status=JobStatus(document["status"]),
        created_at=as_utc(document["created_at"]),
        updated_at=as_utc(document["updated_at"]),
        traceparent=document.get("traceparent") or "",
        fingerprint=document.get("fingerprint") or "",
        image=_image(image) if image else None,
        idempotency_key=document.get("idempotency_key"),
        attempt=int(document.get("attempt") or 0),
        execution_id=document.get("execution_id"),
        execution_ids=tuple(document.get("execution_ids") or ()),
        deadline=_instant(document.get("deadline")),
        error=JobError(error["code"], error["message"]) if error else None,
        result=_result(result) if result else None,
        deleted=bool(document.get("deleted")),
        keep_image=bool(document.get("keep_image")),
        image_deleted_at=_instant(document.get("image_deleted_at")),
        purged_at=_instant(document.get("purged_at")),
        applied_events=tuple(document.get("applied_events") or ()),
        version=int(document.get("version") or 0),
    )


def outbox_of(document: Mapping[str, Any]) -> Outbox:
    image = document.get("image")
    return Outbox(
        job_id=str(document["_id"]),
        events=tuple(OutboxEvent.from_document(entry) for entry in document.get("outbox", [])),
        deleted=bool(document.get("deleted")),
        image_uri=image["uri"] if image else None,
    )


def _instant(value: datetime | None) -> datetime | None:
    return as_utc(value) if value is not None else None


def _image(image: Mapping[str, Any]) -> StoredImage:
    return StoredImage(
        uri=image["uri"],
        media_type=image["media_type"],
        size=int(image["size"]),
        width=int(image["width"]),
        height=int(image["height"]),
        sha256=image["sha256"],
    )


def _result(result: Mapping[str, Any]) -> JobResult:
    return JobResult(
        execution_id=result["execution_id"],
        attempt=int(result["attempt"]),
        executor=result["executor"],
        model=result["model"],
        result=dict(result["result"]),
        timings=dict(result["timings"]),
        completed_at=as_utc(result["completed_at"]),
    )


_FIELDS = dataclasses.fields(Job)
