"""Synchronous classification: a job created and executed like any other, then awaited; and
the long poll of `GET /jobs/{id}?wait=`, which awaits a job the same way.

The request shares everything with the asynchronous API (the executors, the events, the job
record); it only waits, bounded, for the job to settle. The result folder wakes the waiter
in-process; a slow poll of MongoDB covers a job settled elsewhere (another replica's folder,
the deadline sweeper).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any

from inference_service.domain.lifecycle import JobStatus
from inference_service.service import JobService, NewJob
from inference_service.storage.jobs import Document
from inference_service.workers.settled import SettledJobs


class ClassificationTimedOut(Exception):
    """The job did not settle in time; it goes on, and can be read later."""

    def __init__(self, job_id: str, seconds: float) -> None:
        self.job_id = job_id
        super().__init__(
            f"job {job_id} did not finish within {seconds:g} s; it continues: "
            f"GET /jobs/{job_id}/result later"
        )


class ClassificationFailed(Exception):
    """The job ended without a result (FAILED or CANCELLED)."""

    def __init__(self, job: Document) -> None:
        self.job_id: str = job["_id"]
        self.status = JobStatus(job["status"])
        self.error: dict[str, Any] | None = job.get("error")
        reason = f": {self.error['message']}" if self.error else ""
        super().__init__(f"job {self.job_id} ended {self.status.value}{reason}")


@dataclass(frozen=True)
class WaitPolicy:
    timeout_seconds: float
    poll_interval_seconds: float


class Classifier:
    def __init__(self, service: JobService, settled: SettledJobs, policy: WaitPolicy) -> None:
        self.service = service
        self.settled = settled
        self.policy = policy

    async def classify(self, request: NewJob) -> Document:
        """The DONE job; raises ClassificationTimedOut or ClassificationFailed."""
        job, _created = await self.service.create(request)
        return await self.settle(request.owner, job)

    async def settle(self, owner: str, job: Document) -> Document:
        job = await self.wait(owner, job, self.policy.timeout_seconds)
        if not JobStatus(job["status"]).terminal:
            raise ClassificationTimedOut(job["_id"], self.policy.timeout_seconds)
        if job["status"] != JobStatus.DONE.value or not job.get("result"):
            raise ClassificationFailed(job)
        return job

    async def wait(self, owner: str, job: Document, seconds: float) -> Document:
        """The job once it is terminal, or as it is after `seconds` (a long poll)."""
        job_id: str = job["_id"]
        deadline = time.monotonic() + seconds
        with self.settled.watch(job_id) as changed:
            if not JobStatus(job["status"]).terminal:
                # Read again now that a fold wakes us: one that came between the caller's
                # read and the watch would otherwise wait for the next poll.
                job = await self.service.get(owner, job_id)
            while not JobStatus(job["status"]).terminal:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        changed.wait(), min(left, self.policy.poll_interval_seconds)
                    )
                changed.clear()
                job = await self.service.get(owner, job_id)
        return job
