"""Tiny builders for `job.execution_requested.v1` as the job service would send it."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from inference_common.events import EventType, KafkaRecord, new_event, to_record
from inference_common.image_refs import image_uri

FILE_ID = "65f1a2b3c4d5e6f708192a3b"


def new_id() -> str:
    return uuid.uuid4().hex


def image_ref(
    data: bytes, file_id: str = FILE_ID, bucket: str = "images", sha256: str | None = None
) -> dict[str, Any]:
    return {
        "uri": image_uri(bucket, file_id),
        "sha256": sha256 or hashlib.sha256(data).hexdigest(),
        "size": len(data),
        "media_type": "image/jpeg",
        "width": 1,
        "height": 1,
    }


def execution_requested(
    image: dict[str, Any],
    *,
    model: str = "mobilenet-v2-imagenet-quant",
    task: str = "classification",
    options: dict[str, Any] | None = None,
    job_id: str | None = None,
    deadline: datetime | None = None,
) -> dict[str, Any]:
    return {
        "job_id": job_id or new_id(),
        "execution_id": new_id(),
        "attempt": 1,
        "model": model,
        "task": task,
        "options": options or {},
        "image": image,
        "deadline": (deadline or datetime.now(UTC) + timedelta(minutes=10)).isoformat(),
    }


def request_record(data: dict[str, Any], traceparent: str | None = None) -> KafkaRecord:
    event = new_event(
        EventType.EXECUTION_REQUESTED,
        "/inference-service",
        data["job_id"],
        data,
        traceparent=traceparent,
        dataref=data["image"]["uri"],
    )
    return to_record(event)
