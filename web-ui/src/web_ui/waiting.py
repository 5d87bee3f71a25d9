"""Following a job or a batch until it ends, by polling: one GET every `poll_interval_s`,
bounded."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from inference_client import Batch, InferenceClient, Job


class JobTimeout(Exception):
    def __init__(self, job: Job, timeout_s: float) -> None:
        self.job = job
        super().__init__(f"Job {job.id} is still {job.status} after {timeout_s:g} s.")


async def wait_for_job(
    api: InferenceClient,
    job: Job,
    *,
    on_status: Callable[[Job], None],
    poll_interval_s: float = 0.3,
    timeout_s: float = 60.0,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Job:
    """The job once terminal; `on_status` sees the first state and every change after it."""
    deadline = clock() + timeout_s
    on_status(job)
    while not job.terminal:
        if clock() >= deadline:
            raise JobTimeout(job, timeout_s)
        await sleep(poll_interval_s)
        latest = await api.get_job(job.id)
        if latest.status != job.status:
            on_status(latest)
        job = latest
    return job


class BatchTimeout(Exception):
    def __init__(self, batch: Batch, timeout_s: float) -> None:
        self.batch = batch
        super().__init__(
            f"Batch {batch.id} has {batch.done} of {batch.total} files finished after "
            f"{timeout_s:g} s."
        )


async def wait_for_batch(
    api: InferenceClient,
    batch: Batch,
    *,
    on_progress: Callable[[Batch], None],
    poll_interval_s: float = 0.3,
    timeout_s: float = 60.0,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Batch:
    """The batch once finished; `on_progress` sees it after every read."""
    deadline = clock() + timeout_s
    on_progress(batch)
    while not batch.finished:
        if clock() >= deadline:
            raise BatchTimeout(batch, timeout_s)
        await sleep(poll_interval_s)
        batch = await api.get_batch(batch.id)
        on_progress(batch)
    return batch
