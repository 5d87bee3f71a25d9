"""New attempts and giving up: what the folder and the sweeper share."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from inference_common.tracecontext import child_traceparent
from inference_service.domain import events
from inference_service.domain.events import Execution
from inference_service.domain.lifecycle import JobStatus
from inference_service.storage.jobs import Document, JobRepository


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    deadline_seconds: float

    def may_retry(self, attempt: int) -> bool:
        return attempt < self.max_attempts

    def deadline(self, attempt: int, requested_at: datetime) -> datetime:
        """When `attempt` is overdue: each attempt gets twice the time of the one before.

        A job whose request waits behind a backlog or a restarting consumer is not lost: its
        request is still in its partition, and a retry would only queue behind it. Doubling
        bounds how many retries such a wait piles on (60 s, 120 s, 240 s by default), while a
        job that is truly stuck is still retried and, after the last attempt, failed.
        """
        return requested_at + timedelta(seconds=self.deadline_seconds * 2 ** (attempt - 1))


class ExecutionScheduler:
    def __init__(self, jobs: JobRepository, policy: RetryPolicy) -> None:
        self.jobs = jobs
        self.policy = policy

    async def retry(
        self,
        job: Document,
        at: datetime,
        *,
        where: Mapping[str, Any] | None = None,
        push: Mapping[str, Any] | None = None,
    ) -> bool:
        """Request attempt n+1 if the job is still on the attempt we read; False otherwise."""
        attempt = job["attempt"] + 1
        execution = Execution.next(attempt, self.policy.deadline(attempt, at))
        trace = child_traceparent(job.get("traceparent"))
        changed = await self.jobs.change(
            job["_id"],
            sources={JobStatus(job["status"])},
            where={"execution_id": job["execution_id"], **(where or {})},
            set_fields={
                "status": JobStatus.QUEUED.value,
                "attempt": execution.attempt,
                "execution_id": execution.execution_id,
                "deadline": execution.deadline,
                "updated_at": at,
                "traceparent": trace,
            },
            push={"execution_ids": execution.execution_id, **(push or {})},
            events=[events.execution_requested(job, execution, at, trace)],
        )
        return changed is not None

    async def fail_deadline(self, job: Document, at: datetime) -> bool:
        """No attempts left: the job FAILED with deadline_exceeded, announced as job.failed."""
        trace = child_traceparent(job.get("traceparent"))
        event = events.deadline_failed(job["_id"], job["execution_id"], job["attempt"], at, trace)
        changed = await self.jobs.change(
            job["_id"],
            sources={JobStatus(job["status"])},
            where={"execution_id": job["execution_id"]},
            set_fields={
                "status": JobStatus.FAILED.value,
                "error": {
                    "code": "deadline_exceeded",
                    "message": f"no result in {job['attempt']} attempt(s), the last "
                    f"within {self.policy.deadline_seconds * 2 ** (job['attempt'] - 1):g} s",
                },
                "deadline": None,
                "updated_at": at,
            },
            events=[event],
        )
        return changed is not None
