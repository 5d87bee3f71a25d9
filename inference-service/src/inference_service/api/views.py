"""How the API shows a job and its result (the schemas Job and JobResult of the spec)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from inference_common.tracecontext import trace_id
from inference_service.domain.clock import iso
from inference_service.domain.job import Job


def job_links(base_path: str, job_id: str) -> dict[str, str]:
    own = f"{base_path}/jobs/{job_id}"
    return {
        "self": own,
        "result": f"{own}/result",
        "image": f"{own}/image",
        "events": f"{own}/events",
    }


def job_view(job: Job, base_path: str) -> dict[str, Any]:
    image = job.image
    return {
        "id": job.id,
        "name": job.name,
        "model": job.model,
        "task": job.task,
        "options": job.options,
        "status": job.status.value,
        "created_at": iso(job.created_at),
        "updated_at": iso(job.updated_at),
        "image": (
            {
                "media_type": image.media_type,
                "size": image.size,
                "width": image.width,
                "height": image.height,
                "sha256": image.sha256,
            }
            if image
            else None
        ),
        "attempt": job.attempt,
        "error": {"code": job.error.code, "message": job.error.message} if job.error else None,
        "trace_id": trace_id(job.traceparent),
        "links": job_links(base_path, job.id),
        "keep_image": job.keep_image,
        "image_deleted_at": _instant(job.image_deleted_at),
        "purged_at": _instant(job.purged_at),
    }


def _instant(at: datetime | None) -> str | None:
    return iso(at) if at is not None else None


def result_view(job: Job) -> dict[str, Any]:
    result = job.result
    assert result is not None, "only a DONE job has a result"
    return {
        "job_id": job.id,
        "model": result.model,
        "task": job.task,
        "result": result.result,
        "timings": result.timings,
        "attempt": result.attempt,
        "executor": result.executor,
        "completed_at": iso(result.completed_at),
    }
