"""No job stays QUEUED or RUNNING past its execution deadline.

The deadline lives in the job, so this works after any restart. An overdue job gets a new
attempt (new execution id, new execution_requested) while attempts remain, and otherwise
FAILS with deadline_exceeded. Replicas may sweep at once: each change is a compare-and-set,
so only one of them wins.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from inference_common import tracing
from inference_common.tracecontext import trace_id
from inference_service.domain.clock import now
from inference_service.domain.job import RetryPolicy
from inference_service.metrics import ServiceMetrics
from inference_service.service_layer.writer import JobWriter

log = logging.getLogger(__name__)


@dataclass(eq=False)
class DeadlineSweeping:
    writer: JobWriter
    policy: RetryPolicy
    metrics: ServiceMetrics
    batch_size: int = 200

    async def sweep_once(self) -> int:
        """Handle every overdue job once; returns how many changed."""
        at = now()
        changed = 0
        for job in await self.writer.store.overdue(at, self.batch_size):
            if not job.overdue(at):
                continue
            retry = self.policy.may_retry(job.attempt)
            # A span of the job's trace, which the new attempt's (or the failure's) events
            # carry: what follows hangs from a span that is exported.
            with tracing.span(
                "deadline sweep",
                parent=job.traceparent,
                attributes={"job_id": job.id, "action": "retry" if retry else "fail"},
            ):
                trace = tracing.traceparent_of()
                decide = job.retry if retry else job.expire
                if not await self.writer.save(decide(at, self.policy, trace)):
                    continue  # changed meanwhile (folded, cancelled): no longer this sweep's
            changed += 1
            fields = {
                "job_id": job.id,
                "trace_id": trace_id(job.traceparent),
                "attempt": job.attempt,
            }
            if retry:
                self.metrics.deadlines_missed.labels("retried").inc()
                log.warning("execution missed its deadline: retrying", extra=fields)
            else:
                self.metrics.deadlines_missed.labels("failed").inc()
                log.warning("last execution missed its deadline: job FAILED", extra=fields)
        return changed
