"""Retention: a finished job's image and result are removed when the policy says, in batches.

Only finished jobs are touched, and finished is final: no execution needs their image again,
so the sweep never races a job being worked on. The image's bytes go first, then the job is
saved without them (a compare-and-set, with a `purged` event): a crash in between leaves a job
that still names its image, and the next sweep removes it again (deleting is idempotent). A
save lost to a concurrent write (a DELETE, another replica's sweep) is left to the next sweep.
Each job's image is its own copy in the image store (keyed by sha256 and job id), so jobs
with the same bytes keep theirs.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime

from inference_common import tracing
from inference_common.image_store import ImageStore, ImageStoreError
from inference_common.tracecontext import trace_id
from inference_service.domain.clock import now
from inference_service.domain.job import Job, RetentionPolicy
from inference_service.metrics import ServiceMetrics
from inference_service.service_layer.writer import JobWriter

log = logging.getLogger(__name__)


@dataclass(eq=False)
class RetentionSweeping:
    writer: JobWriter
    images: ImageStore
    policy: RetentionPolicy
    metrics: ServiceMetrics
    batch_size: int = 200

    async def sweep_once(self, at: datetime | None = None) -> int:
        """Purge one batch of what is due at `at` (now); returns how many jobs changed."""
        at = at or now()
        purged = 0
        for job in await self.writer.store.purgeable(at, self.policy, self.batch_size):
            removed = job.due_for_purge(at, self.policy)
            if not removed:
                continue
            with tracing.span(
                "retention sweep", parent=job.traceparent, attributes={"job_id": job.id}
            ):
                purged += await self._purge(job, removed, at)
        return purged

    async def _purge(self, job: Job, removed: tuple[str, ...], at: datetime) -> bool:
        """Remove what is due of one job (`removed`), under the span its `purged` event
        carries."""
        change = job.purge(at, self.policy, tracing.traceparent_of())
        if change is None:
            return False
        fields = {"job_id": job.id, "trace_id": trace_id(job.traceparent)}
        if "image" in removed and job.image is not None:
            try:
                await asyncio.to_thread(self.images.delete, job.image.uri)
            except ImageStoreError as exc:  # this image's store, not the others'
                log.warning("cannot remove the job's image now: %s", exc, extra=fields)
                return False
        if not await self.writer.save(change):
            return False  # changed meanwhile: the next sweep asks the job again
        for part in removed:
            self.metrics.purged.labels(part).inc()
        log.info("retention removed the job's %s", " and ".join(removed), extra=fields)
        return True
