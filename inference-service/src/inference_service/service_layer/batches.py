"""The batch use cases: create a batch's jobs, count them, read their results, cancel, delete.

Every job goes through JobService, as if sent to `POST /jobs` one by one; with the batch's
Idempotency-Key each file's job has a key derived from it, so a retried upload finds the jobs
the first one created. The batch document is written last: once it exists, the upload is
complete, and a retry answers it without reading a file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from inference_common.tracecontext import Span
from inference_service.domain.batch import (
    DELETED,
    Batch,
    BatchFile,
    BatchProgress,
    FileProblem,
    batch_fingerprint,
    batch_id_for,
    file_key,
)
from inference_service.domain.clock import now
from inference_service.domain.images import ImageTooLarge, InvalidImage
from inference_service.domain.job import Job
from inference_service.domain.lifecycle import IllegalTransition
from inference_service.ports import BatchStore
from inference_service.service_layer.jobs import (
    IdempotencyKeyReused,
    JobNotFound,
    JobService,
    NewJob,
)

log = logging.getLogger(__name__)

# What makes one file no job, while the others go on; anything else fails the request.
FILE_ERRORS: Final = (InvalidImage, ImageTooLarge, IdempotencyKeyReused)


class BatchNotFound(LookupError):
    def __init__(self, batch_id: str) -> None:
        self.batch_id = batch_id
        super().__init__(f"there is no batch {batch_id}")


class BatchNotFinished(Exception):
    def __init__(self, progress: BatchProgress) -> None:
        self.progress = progress
        super().__init__(
            f"the batch has {progress.total - progress.done} of {progress.total} files still "
            "to finish; its results are ready once it is finished"
        )


@dataclass(frozen=True)
class UploadedFile:
    """One file of an upload: its bytes, or why they were not read (too large)."""

    name: str
    data: bytes = b""
    error: Exception | None = None


@dataclass(frozen=True)
class NewBatch:
    owner: str
    model: str
    options: dict[str, Any]
    idempotency_key: str | None = None
    span: Span = field(default_factory=Span)


class BatchService:
    def __init__(
        self,
        batches: BatchStore,
        jobs: JobService,
        file_problem: Callable[[Exception], FileProblem],
    ) -> None:
        self.batches = batches
        self.jobs = jobs
        # How the API tells a file's error (a problem+json's status, type and detail).
        self.file_problem = file_problem

    async def create(
        self, request: NewBatch, files: Iterator[UploadedFile]
    ) -> tuple[BatchProgress, bool]:
        """The batch and whether it is new (False: a retry of an upload already complete).
        `files` is read one at a time, on a thread (an archive is decompressed as it goes)."""
        entry = self.jobs.catalog.get(request.model)  # an unknown model fails before any file
        options = entry.options_with_defaults(request.options)
        fingerprint = batch_fingerprint(request.model, options)
        batch_id = batch_id_for(request.owner, request.idempotency_key)
        earlier = await self._earlier(request, batch_id, fingerprint)
        if earlier is not None:
            return earlier, False
        made: list[BatchFile] = []
        index = 0
        while (upload := await asyncio.to_thread(next, files, None)) is not None:
            made.append(await self._job_for(request, index, upload))
            index += 1
        batch = Batch(
            id=batch_id,
            owner=request.owner,
            model=request.model,
            options=options,
            created_at=now(),
            files=tuple(made),
            fingerprint=fingerprint,
            idempotency_key=request.idempotency_key,
        )
        if not await self.batches.add(batch):
            # A concurrent retry with the same key wrote it first, with the same jobs.
            earlier = await self._earlier(request, batch_id, fingerprint)
            assert earlier is not None, "the batch was there a moment ago"
            return earlier, False
        rejected = sum(1 for file in made if file.problem is not None)
        log.info(
            "batch created",
            extra={"batch_id": batch.id, "files": len(made), "rejected": rejected},
        )
        return await self._progress(batch), True

    async def _earlier(
        self, request: NewBatch, batch_id: str, fingerprint: str
    ) -> BatchProgress | None:
        if request.idempotency_key is None:
            return None
        batch = await self.batches.get(batch_id)
        if batch is None:
            return None
        if batch.fingerprint != fingerprint:
            raise IdempotencyKeyReused(request.idempotency_key)
        return await self._progress(batch)

    async def _job_for(self, request: NewBatch, index: int, upload: UploadedFile) -> BatchFile:
        try:
            if upload.error is not None:
                raise upload.error
            key = request.idempotency_key
            job, _new = await self.jobs.create(
                NewJob(
                    owner=request.owner,
                    name=upload.name,
                    model=request.model,
                    options=request.options,
                    image=upload.data,
                    execute=True,
                    idempotency_key=file_key(key, index, upload.name) if key else None,
                    span=request.span,
                )
            )
        except FILE_ERRORS as exc:
            return BatchFile(index, upload.name, problem=self.file_problem(exc))
        return BatchFile(index, upload.name, job_id=job.id)

    # --- reads ---

    async def get(self, owner: str, batch_id: str) -> BatchProgress:
        return await self._progress(await self._batch(owner, batch_id))

    async def results(
        self, owner: str, batch_id: str
    ) -> tuple[Batch, AsyncIterator[tuple[BatchFile, Job | None]]]:
        """Each file with its job as it is now (None: no job, or deleted), read one by one as
        the caller iterates; BatchNotFinished before every job has finished."""
        progress = await self._progress(await self._batch(owner, batch_id))
        if not progress.finished:
            raise BatchNotFinished(progress)
        return progress.batch, self._files_with_jobs(progress.batch)

    async def _files_with_jobs(self, batch: Batch) -> AsyncIterator[tuple[BatchFile, Job | None]]:
        for file in batch.files:
            job = await self.jobs.jobs.get(file.job_id) if file.job_id is not None else None
            yield file, job if job is not None and not job.deleted else None

    async def _batch(self, owner: str, batch_id: str) -> Batch:
        batch = await self.batches.get(batch_id)
        if batch is None or batch.owner != owner:
            raise BatchNotFound(batch_id)
        return batch

    async def _progress(self, batch: Batch) -> BatchProgress:
        """Reads only the jobs not yet known to be finished, and records those that are now."""
        unsettled = batch.unsettled()
        found = await self.jobs.jobs.statuses(unsettled) if unsettled else {}
        statuses = {job_id: found.get(job_id, DELETED) for job_id in unsettled}
        settled = batch.newly_settled(statuses)
        if settled:
            await self.batches.settle(batch.id, settled)
            batch = batch.with_settled(settled)
        return batch.progress(statuses)

    # --- writes ---

    async def cancel(
        self, owner: str, batch_id: str, reason: str | None, span: Span
    ) -> BatchProgress:
        batch = await self._batch(owner, batch_id)
        for job_id in batch.unsettled():
            # Finished (or deleted) meanwhile: it keeps its outcome.
            with contextlib.suppress(IllegalTransition, JobNotFound):
                await self.jobs.cancel(owner, job_id, reason or "the batch was cancelled", span)
        log.info("batch cancelled", extra={"batch_id": batch_id})
        return await self._progress(batch)

    async def delete(self, owner: str, batch_id: str, span: Span) -> None:
        """Every job first, then the batch: a delete cut short is finished by a repeat."""
        batch = await self._batch(owner, batch_id)
        for job_id in batch.job_ids:
            with contextlib.suppress(JobNotFound):
                await self.jobs.delete(owner, job_id, span)
        await self.batches.delete(batch_id)
        log.info("batch deleted", extra={"batch_id": batch_id})
