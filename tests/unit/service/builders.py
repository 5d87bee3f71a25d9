"""Tiny builders for unit tests: an image, a request, a job, and the executors' result records."""

from __future__ import annotations

import io
import itertools
from datetime import UTC, datetime
from typing import Any

from PIL import Image
from starlette.types import Message

from inference_common.events import EventType, new_event, to_record
from inference_service.domain.job import Change, Job, RetryPolicy, StoredImage
from inference_service.ports import Record
from inference_service.service_layer.jobs import NewJob

MODEL = "mobilenet-v2-imagenet-quant"
AT = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
IMAGE = StoredImage("mem://x", "image/jpeg", 10, 4, 3, "a" * 64)


def jpeg(size: tuple[int, int] = (8, 6)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 10, 10)).save(buffer, "JPEG")
    return buffer.getvalue()


def new_job(execute: bool = True, **fields: Any) -> NewJob:
    return NewJob(
        owner=fields.pop("owner", "alice"),
        name="n",
        model=MODEL,
        options={},
        image=fields.pop("image", jpeg()),
        execute=execute,
        **fields,
    )


def creation(
    job_id: str = "0123456789abcdef0123456789abcdef",
    *,
    image: StoredImage | None = IMAGE,
    at: datetime = AT,
) -> Change:
    """Alice's classification job `n` on model `m`, as Job.create makes it."""
    return Job.create(
        job_id=job_id,
        owner="alice",
        name="n",
        model="m",
        task="classification",
        options={},
        image=image,
        idempotency_key=None,
        fingerprint="f",
        traceparent=TRACE,
        at=at,
    )


def queued_creation(job_id: str, *, at: datetime, policy: RetryPolicy) -> Change:
    """A job created and executed in one request: stored QUEUED with both events."""
    created = creation(job_id, at=at)
    return created.then(created.after.execute(at, policy, TRACE))


_offsets = itertools.count(1)


def record(event_type: EventType, request: dict[str, Any], **data: Any) -> Record:
    """A result event about the execution that `request` (execution_requested data) asked for."""
    payload: dict[str, Any] = {
        "job_id": request["job_id"],
        "execution_id": request["execution_id"],
        "attempt": request["attempt"],
        "executor": "test:1",
    }
    if event_type is EventType.STARTED:
        payload["started_at"] = "2026-11-23T12:00:00Z"
    elif event_type is EventType.COMPLETED:
        payload |= {
            "model": request["model"],
            "result": {
                "task": "classification",
                "classes": [{"index": 1, "label": "cat", "score": 0.9}],
            },
            "timings": {"decode": 1.0, "invoke": 2.0},
            "completed_at": "2026-11-23T12:00:01Z",
        }
    else:
        payload |= {
            "failed_by": "test:1",
            "error": {"code": "model_error", "message": "it broke", "retryable": False},
            "failed_at": "2026-11-23T12:00:01Z",
        }
    payload |= data
    event = new_event(event_type, "/executor-service", request["job_id"], payload)
    kafka = to_record(event)
    headers: list[tuple[str, bytes | None]] = list(kafka.headers)
    return Record("results", 0, next(_offsets), kafka.key, kafka.value, headers)


def raw_record(value: bytes) -> Record:
    return Record("results", 0, next(_offsets), b"k", value, [])


async def no_body() -> Message:
    """An ASGI `receive` for a request whose body a middleware never reads."""
    return {"type": "http.request", "body": b"", "more_body": False}


async def discard(message: Message) -> None:
    """An ASGI `send` for a middleware that answers by raising a Problem."""
