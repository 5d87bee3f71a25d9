"""Synchronous classification: a job created and executed like any other, then awaited; and
the long poll of `GET /jobs/{id}?wait=`, which awaits a job the same way.

The request shares everything with the asynchronous API (the executors, the events, the job
record); it only waits, bounded, for the job to settle. Whatever finishes a job in this
process hands it to the waiter (SettledJobs), so no read is needed; a slow poll of the store
covers a job finished elsewhere (another replica).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

from inference_service.domain.job import Job, JobError
from inference_service.domain.lifecycle import JobStatus
from inference_service.service_layer.jobs import JobService, NewJob
from inference_service.service_layer.settled import SettledJobs


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

    def __init__(self, job: Job) -> None:
        self.job_id = job.id
        self.status = job.status
        self.error: JobError | None = job.error
        reason = f": {self.error.message}" if self.error else ""
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

    async def classify(self, request: NewJob) -> Job:
        """The DONE job; raises ClassificationTimedOut or ClassificationFailed."""
        job, _created = await self.service.create(request)
        return await self.settle(request.owner, job)

    async def settle(self, owner: str, job: Job) -> Job:
        job = await self.wait(owner, job, self.policy.timeout_seconds)
        if not job.status.terminal:
            raise ClassificationTimedOut(job.id, self.policy.timeout_seconds)
        if job.status is not JobStatus.DONE or job.result is None:
            raise ClassificationFailed(job)
        return job

    async def wait(self, owner: str, job: Job, seconds: float) -> Job:
        """The job once it is terminal, or as it is after `seconds` (a long poll)."""
        deadline = time.monotonic() + seconds
        with self.settled.watch(job.id) as watch:
            while not job.status.terminal:
                if watch.job is not None:
                    job = watch.job
                    continue
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        watch.changed.wait(), min(left, self.policy.poll_interval_seconds)
                    )
                if watch.job is None:
                    job = await self.service.get(owner, job.id)
        return job
