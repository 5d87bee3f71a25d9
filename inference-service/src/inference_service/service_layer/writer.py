"""JobWriter: every change to a job is saved here, and what follows a saved change starts here.

After a write: its events are handed to the relay (which publishes them without reading the
job again), a job that finished wakes the requests waiting for it, and the metrics count.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from inference_common import tracing
from inference_service.domain.events import OutboxEvent
from inference_service.domain.job import Change, Job
from inference_service.metrics import ServiceMetrics
from inference_service.ports import JobStore, Outbox
from inference_service.service_layer.settled import SettledJobs


class OutboxWrites:
    """The outboxes written since the relay last looked, per job in order, and its wake-up.

    A scan for every pending outbox runs only once per poll interval, to recover what a
    restart, a Kafka outage or an unanswered write left behind.
    """

    def __init__(self) -> None:
        self.wakeup = asyncio.Event()
        self._outboxes: dict[str, Outbox] = {}  # insertion-ordered

    def __call__(self, outbox: Outbox) -> None:
        """A job's pending events after a write: all of them, so they replace earlier ones."""
        self._outboxes[outbox.job_id] = outbox
        self.wakeup.set()

    def restore(self, outbox: Outbox) -> None:
        """Put back what was taken and not handled; a newer write of the job wins."""
        self._outboxes.setdefault(outbox.job_id, outbox)
        self.wakeup.set()

    def __len__(self) -> int:
        return len(self._outboxes)

    def clear(self) -> None:
        """Forget what was written so far (another replica's scan will find it)."""
        self._outboxes.clear()

    def take(self, limit: int) -> list[Outbox]:
        taken = list(self._outboxes.values())[:limit]
        for outbox in taken:
            del self._outboxes[outbox.job_id]
        if self._outboxes:
            self.wakeup.set()  # more than one batch was written: come straight back
        return taken


class JobWriter:
    def __init__(
        self,
        store: JobStore,
        *,
        outbox: Callable[[Outbox], None],
        settled: SettledJobs,
        metrics: ServiceMetrics,
    ) -> None:
        self.store = store
        self._outbox = outbox
        self._settled = settled
        self._metrics = metrics

    async def add(self, change: Change) -> None:
        await self.store.add(change)
        self._metrics.jobs_created.labels(change.after.model).inc()
        # A job created with execute=true enters QUEUED: it is counted there only.
        self._metrics.job_transitions.labels(change.after.status.value).inc()
        self._written(change, change.events)

    async def save(self, change: Change) -> bool:
        """False: the job changed since it was read (read it again and decide again)."""
        pending = await self.store.save(change)
        if pending is None:
            return False
        for status in change.statuses:
            self._metrics.job_transitions.labels(status.value).inc()
        self._written(change, pending.events)
        return True

    def _written(self, change: Change, pending: tuple[OutboxEvent, ...]) -> None:
        job = change.after
        if change.entered is not None and change.entered.terminal:
            self._settled.notify(job)
            if tracing.enabled():
                _record_job_span(job)
        if change.events:
            image = job.image.uri if job.image else None
            self._outbox(Outbox(job.id, pending, job.deleted, image))


def _record_job_span(job: Job) -> None:
    """The job's whole life, from its creation (in the request that made its trace) to the
    change that finished it (a fold, a cancel, the deadline sweep): the span every other one
    of the job runs within."""
    tracing.record(
        "job",
        parent=job.traceparent,
        start_ns=round(job.created_at.timestamp() * 1e9),
        end_ns=time.time_ns(),
        job_id=job.id,
        status=job.status.value,
        attempts=job.attempt,
    )
