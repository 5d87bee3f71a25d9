"""DeadlineSweeper: no job stays QUEUED or RUNNING past its execution deadline.

The deadline lives in the job document, so this works after any restart. An overdue job
gets a new attempt (new execution id, new execution_requested) while attempts remain, and
otherwise FAILS with deadline_exceeded. Replicas may sweep at once: every change is a
compare-and-set on the execution the sweeper read, so only one of them wins.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from inference_common.tracecontext import trace_id
from inference_service.domain.clock import now
from inference_service.metrics import ServiceMetrics
from inference_service.storage.jobs import JobRepository
from inference_service.workers.executions import ExecutionScheduler

log = logging.getLogger(__name__)


class DeadlineSweeper:
    def __init__(
        self,
        jobs: JobRepository,
        scheduler: ExecutionScheduler,
        interval: float,
        batch_size: int = 200,
        *,
        metrics: ServiceMetrics | None = None,
    ) -> None:
        self.jobs = jobs
        self.scheduler = scheduler
        self.interval = interval
        self.batch_size = batch_size
        self.metrics = metrics or ServiceMetrics()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.sweep_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("deadline sweep failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)

    async def sweep_once(self) -> int:
        """Handle every overdue job once; returns how many changed."""
        at = now()
        changed = 0
        for job in await self.jobs.overdue(at, self.batch_size):
            fields = {
                "job_id": job["_id"],
                "trace_id": trace_id(job.get("traceparent")),
                "attempt": job["attempt"],
            }
            if self.scheduler.policy.may_retry(job["attempt"]):
                if await self.scheduler.retry(job, at):
                    changed += 1
                    self.metrics.deadlines_missed.labels("retried").inc()
                    log.warning("execution missed its deadline: retrying", extra=fields)
            elif await self.scheduler.fail_deadline(job, at):
                changed += 1
                self.metrics.deadlines_missed.labels("failed").inc()
                log.warning("last execution missed its deadline: job FAILED", extra=fields)
        return changed
