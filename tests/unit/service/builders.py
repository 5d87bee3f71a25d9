"""Tiny builders for unit tests: an image, a request, and the executors' result records."""

from __future__ import annotations

import io
import itertools
from typing import Any

from PIL import Image

from inference_common.events import EventType, new_event, to_record
from inference_service.ports import Record
from inference_service.service_layer.jobs import NewJob

MODEL = "mobilenet-v2-imagenet-quant"


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
