"""How the API shows a job, its result and a batch (the schemas Job, JobResult, Batch and
BatchResultLine of the spec)."""

from __future__ import annotations

from typing import Any

from inference_common.tracecontext import trace_id
from inference_service.api.problems import describe, problem_body
from inference_service.domain.batch import DELETED, REJECTED, BatchFile, BatchProgress, FileProblem
from inference_service.domain.clock import iso
from inference_service.domain.job import Job
from inference_service.domain.lifecycle import JobStatus
from inference_service.service_layer.jobs import NoResult


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
    }


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


def batch_links(base_path: str, batch_id: str) -> dict[str, str]:
    own = f"{base_path}/batches/{batch_id}"
    return {"self": own, "results": f"{own}/results", "cancellation": f"{own}/cancellation"}


def batch_view(progress: BatchProgress, base_path: str) -> dict[str, Any]:
    batch = progress.batch
    return {
        "id": batch.id,
        "model": batch.model,
        "options": batch.options,
        "created_at": iso(batch.created_at),
        "total": progress.total,
        "counts": progress.counts,
        "progress": round(progress.share, 4),
        "finished": progress.finished,
        "rejected": [
            {"index": file.index, "name": file.name, "problem": _file_problem(file.problem)}
            for file in batch.files
            if file.problem is not None
        ],
        "links": batch_links(base_path, batch.id),
    }


def result_line(file: BatchFile, job: Job | None) -> dict[str, Any]:
    """One line of a batch's results: the result of a DONE job, else why there is none."""
    line: dict[str, Any] = {"index": file.index, "name": file.name, "job_id": file.job_id}
    if file.problem is not None:
        return {**line, "status": REJECTED, "problem": _file_problem(file.problem)}
    if job is None:
        detail = "the job was deleted"
        return {**line, "status": DELETED, "problem": problem_body(404, detail, slug="job-deleted")}
    if job.status is JobStatus.DONE and job.result is not None:
        return {**line, "status": job.status.value, "result": job.result.result}
    spec = describe(NoResult(job))
    assert spec is not None
    return {
        **line,
        "status": job.status.value,
        "problem": problem_body(spec.status, spec.detail, slug=spec.slug, **spec.extensions),
    }


def _file_problem(problem: FileProblem | None) -> dict[str, Any]:
    assert problem is not None
    return problem_body(problem.status, problem.detail, slug=problem.slug)
