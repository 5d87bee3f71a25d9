"""Builders for contract-valid job events (checked against openapi/asyncapi.yaml by tests)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from cloudevents.core.v1.event import CloudEvent

from inference_common.events import EventType, new_event

JOB_ID = "3f2a9c1e00000000000000000000abcd"
OTHER_JOB_ID = "77e1b2c3000000000000000000001234"
EXECUTION_ID = "e" * 32
T0 = datetime(2026, 11, 23, 12, 0, 1, 123000, tzinfo=UTC)
IMAGE = {
    "uri": "blob://images/0123456789abcdef01234567",
    "sha256": "a" * 64,
    "size": 1234,
    "media_type": "image/jpeg",
    "width": 640,
    "height": 480,
}
SOURCES = {
    EventType.STARTED: "/executor-service",
    EventType.COMPLETED: "/executor-service",
    EventType.FAILED: "/executor-service",
}


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def event(
    event_type: EventType, data: dict[str, Any], seconds: float = 0, job_id: str = JOB_ID
) -> CloudEvent:
    source = SOURCES.get(event_type, "/inference-service")
    return new_event(event_type, source, job_id, data, time=at(seconds))


def execution(job_id: str = JOB_ID, attempt: int = 1) -> dict[str, Any]:
    return {"job_id": job_id, "execution_id": EXECUTION_ID, "attempt": attempt}


def created(job_id: str = JOB_ID, model: str = "mobilenet-v2-imagenet-quant") -> dict[str, Any]:
    return {
        "job_id": job_id,
        "name": "cat",
        "model": model,
        "task": "classification",
        "options": {},
        "owner": "anonymous",
        "status": "NEW",
        "image": IMAGE,
        "created_at": at(0).isoformat(),
    }


def execution_requested(job_id: str = JOB_ID, attempt: int = 1) -> dict[str, Any]:
    return {
        **execution(job_id, attempt),
        "model": "mobilenet-v2-imagenet-quant",
        "task": "classification",
        "options": {},
        "image": IMAGE,
        "deadline": at(60).isoformat(),
    }


def started(job_id: str = JOB_ID, attempt: int = 1) -> dict[str, Any]:
    return {
        **execution(job_id, attempt),
        "executor": "host-a:4242",
        "started_at": at(1).isoformat(),
    }


def classification() -> dict[str, Any]:
    return {
        "task": "classification",
        "classes": [
            {"index": 286, "label": "Egyptian cat", "score": 0.82},
            {"index": 282, "label": "tabby", "score": 0.1},
        ],
    }


def detection(labels: list[str]) -> dict[str, Any]:
    box = {"ymin": 0.1, "xmin": 0.1, "ymax": 0.5, "xmax": 0.5}
    pixels = {"left": 10, "top": 10, "right": 50, "bottom": 50}
    return {
        "task": "object_detection",
        "image_width": 100,
        "image_height": 100,
        "detections": [
            {"index": i, "label": label, "score": 0.9, "box": box, "box_pixels": pixels}
            for i, label in enumerate(labels)
        ],
    }


def completed(
    job_id: str = JOB_ID,
    result: dict[str, Any] | None = None,
    timings: dict[str, float] | None = None,
) -> dict[str, Any]:
    return {
        **execution(job_id),
        "executor": "host-a:4242",
        "model": "mobilenet-v2-imagenet-quant",
        "result": result or classification(),
        "timings": {"fetch_ms": 3.0, "inference_ms": 20.4, "total_ms": 23.4}
        if timings is None
        else timings,
        "completed_at": at(2).isoformat(),
    }


def failed(
    job_id: str = JOB_ID, code: str = "image_unreadable", retryable: bool = False
) -> dict[str, Any]:
    return {
        **execution(job_id),
        "failed_by": "host-a:4242",
        "error": {"code": code, "message": "cannot identify image file", "retryable": retryable},
        "failed_at": at(2).isoformat(),
    }


def cancelled(job_id: str = JOB_ID, reason: str = "client request") -> dict[str, Any]:
    return {"job_id": job_id, "reason": reason, "cancelled_at": at(3).isoformat()}


def deleted(job_id: str = JOB_ID) -> dict[str, Any]:
    return {"job_id": job_id, "deleted_at": at(4).isoformat()}


def purged(job_id: str = JOB_ID, removed: tuple[str, ...] = ("image",)) -> dict[str, Any]:
    return {"job_id": job_id, "removed": list(removed), "purged_at": at(5).isoformat()}
