"""A job as stored (one MongoDB document) and as the API shows it."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from inference_common.image_refs import IMAGE_COLLECTION, image_uri
from inference_common.tracecontext import trace_id
from inference_service.domain.clock import iso
from inference_service.domain.lifecycle import JobStatus


@dataclass(frozen=True)
class ImageInfo:
    """What validation learned about an image; the bytes themselves go to the image store."""

    media_type: str
    size: int
    width: int
    height: int
    sha256: str

    def stored(self, file_id: str) -> dict[str, Any]:
        return {
            "file_id": file_id,
            "uri": image_uri(IMAGE_COLLECTION, file_id),
            "media_type": self.media_type,
            "size": self.size,
            "width": self.width,
            "height": self.height,
            "sha256": self.sha256,
        }


def new_job_id() -> str:
    return uuid.uuid4().hex


def request_fingerprint(
    name: str, model: str, options: dict[str, Any], sha256: str | None, execute: bool
) -> str:
    """Tells an idempotent retry (same request) from a key reused for a different one."""
    canonical = json.dumps(
        {"name": name, "model": model, "options": options, "image": sha256, "execute": execute},
        sort_keys=True,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def new_job_document(
    *,
    job_id: str,
    owner: str,
    name: str,
    model: str,
    task: str,
    options: dict[str, Any],
    image: dict[str, Any] | None,
    idempotency_key: str | None,
    fingerprint: str,
    traceparent: str,
    at: datetime,
) -> dict[str, Any]:
    return {
        "_id": job_id,
        "owner": owner,
        "name": name,
        "model": model,
        "task": task,
        "options": options,
        "status": JobStatus.NEW.value,
        "created_at": at,
        "updated_at": at,
        "image": image,
        "attempt": 0,
        "execution_id": None,
        "execution_ids": [],
        "deadline": None,
        "error": None,
        "result": None,
        "traceparent": traceparent,
        "idempotency_key": idempotency_key,
        "fingerprint": fingerprint,
        "deleted": False,
        "outbox": [],
        "outbox_pending": False,
        "applied_events": [],
    }


def job_links(base_path: str, job_id: str) -> dict[str, str]:
    own = f"{base_path}/jobs/{job_id}"
    return {
        "self": own,
        "result": f"{own}/result",
        "image": f"{own}/image",
        "events": f"{own}/events",
    }


def job_view(job: dict[str, Any], base_path: str) -> dict[str, Any]:
    image = job.get("image")
    error = job.get("error")
    return {
        "id": job["_id"],
        "name": job["name"],
        "model": job["model"],
        "task": job["task"],
        "options": job["options"],
        "status": job["status"],
        "created_at": iso(job["created_at"]),
        "updated_at": iso(job["updated_at"]),
        "image": (
            {key: image[key] for key in ("media_type", "size", "width", "height", "sha256")}
            if image
            else None
        ),
        "attempt": job["attempt"],
        "error": {"code": error["code"], "message": error["message"]} if error else None,
        "trace_id": trace_id(job.get("traceparent")),
        "links": job_links(base_path, job["_id"]),
    }


def result_view(job: dict[str, Any]) -> dict[str, Any]:
    result = job["result"]
    return {
        "job_id": job["_id"],
        "model": result["model"],
        "task": job["task"],
        "result": result["result"],
        "timings": result["timings"],
        "attempt": result["attempt"],
        "executor": result["executor"],
        "completed_at": iso(result["completed_at"]),
    }
