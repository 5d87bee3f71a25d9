"""The job use cases behind the API: each one a few reads and one atomic write.

Every state change and the events it raises are written together in one compare-and-set
update of the job document (see storage/jobs.py); the outbox relay publishes them later.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from pymongo.errors import ConnectionFailure

from inference_common.tracecontext import Span, trace_id
from inference_service.domain import events
from inference_service.domain.catalog import ModelCatalog
from inference_service.domain.clock import as_utc, now
from inference_service.domain.cursor import Cursor
from inference_service.domain.events import Execution, OutboxEvent
from inference_service.domain.images import inspect_image
from inference_service.domain.jobs import (
    ImageInfo,
    new_job_document,
    new_job_id,
    request_fingerprint,
)
from inference_service.domain.lifecycle import (
    CANCELLABLE,
    IllegalTransition,
    JobStatus,
    check_cancel,
    check_execute,
    check_image_change,
)
from inference_service.storage.images import ImageStore
from inference_service.storage.jobs import Document, JobFilter, JobRepository

log = logging.getLogger(__name__)

# A compare-and-set that lost a race re-reads and tries again; more than this is a bug.
_CAS_ATTEMPTS = 3
# A claimed Idempotency-Key whose job is still not written after this was abandoned.
_KEY_CLAIM_TIMEOUT = timedelta(seconds=30)


class JobNotFound(LookupError):
    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(f"there is no job {job_id}")


class IdempotencyKeyReused(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(f"the Idempotency-Key {key!r} was already used for a different request")


class IdempotentRequestInProgress(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(
            f"a request with the Idempotency-Key {key!r} is still being processed; retry shortly"
        )


class ExecuteNeedsImage(ValueError):
    def __init__(self) -> None:
        super().__init__("execute=true needs an image: send it with the job (multipart)")


class NoResult(Exception):
    """The job has no result (yet); carries what the client needs to decide what next."""

    def __init__(self, job: Document) -> None:
        self.job_id: str = job["_id"]
        self.status = JobStatus(job["status"])
        self.error: dict[str, Any] | None = job.get("error")
        super().__init__(_no_result_detail(self.status))


def _no_result_detail(status: JobStatus) -> str:
    if status is JobStatus.FAILED:
        return "the job failed; `error` tells why"
    if status is JobStatus.CANCELLED:
        return "the job was cancelled; it has no result"
    if status is JobStatus.NEW:
        return "the job is NEW: execute it first (POST /jobs/{job_id}/execution)"
    return f"the job is {status.value}; try again shortly or follow its events"


@dataclass(frozen=True)
class Limits:
    max_image_bytes: int
    max_image_pixels: int
    execution_deadline_seconds: float


@dataclass(frozen=True)
class NewJob:
    owner: str
    name: str
    model: str
    options: dict[str, Any]
    image: bytes | None
    execute: bool = False
    idempotency_key: str | None = None
    # The request's span: the job's events continue its trace.
    span: Span = field(default_factory=Span)


class JobService:
    def __init__(
        self,
        jobs: JobRepository,
        images: ImageStore,
        catalog: ModelCatalog,
        limits: Limits,
        *,
        replica: str | None = None,
    ) -> None:
        self.jobs = jobs
        self.images = images
        self.catalog = catalog
        self.limits = limits
        # Who claims Idempotency-Keys: this replica's name (one live process at a time holds
        # it, inference_common.replica) and this process.
        self.replica = replica
        self.claimant = f"{replica}/{uuid.uuid4().hex}" if replica else None

    # --- reads ---

    async def get(self, owner: str, job_id: str) -> Document:
        job = await self.jobs.get(job_id, owner)
        if job is None:
            raise JobNotFound(job_id)
        return job

    async def page(
        self, owner: str, where: JobFilter, cursor: str | None, limit: int
    ) -> tuple[list[Document], str | None]:
        after = Cursor.decode(cursor) if cursor else None
        found = await self.jobs.page(owner, where, after, limit)
        if len(found) <= limit:
            return found, None
        last = found[limit - 1]
        return found[:limit], Cursor(last["created_at"], last["_id"]).encode()

    async def result(self, owner: str, job_id: str) -> Document:
        job = await self.get(owner, job_id)
        if job["status"] != JobStatus.DONE.value or not job.get("result"):
            raise NoResult(job)
        return job

    async def image(self, owner: str, job_id: str) -> tuple[bytes, str]:
        job = await self.get(owner, job_id)
        image = job.get("image")
        data = await self.images.get(image["file_id"]) if image else None
        if image is None or data is None:
            raise JobNotFound(job_id)
        return data, str(image["media_type"])

    # --- writes ---

    async def inspect(self, data: bytes) -> ImageInfo:
        """Validate off the event loop: decoding a large image takes milliseconds."""
        return await asyncio.to_thread(
            inspect_image,
            data,
            max_bytes=self.limits.max_image_bytes,
            max_pixels=self.limits.max_image_pixels,
        )

    async def create(self, request: NewJob) -> tuple[Document, bool]:
        """The job and whether it is new (False: an idempotent retry of an earlier create)."""
        entry = self.catalog.get(request.model)
        options = entry.options_with_defaults(request.options)
        if request.execute and request.image is None:
            raise ExecuteNeedsImage()
        info = await self.inspect(request.image) if request.image is not None else None
        fingerprint = request_fingerprint(
            request.name, request.model, options, info.sha256 if info else None, request.execute
        )
        job_id = new_job_id()
        key = request.idempotency_key
        if key is not None:
            earlier = await self._earlier(request, fingerprint)
            if earlier is not None:
                log.debug("idempotent retry: the job exists", extra=_fields(earlier))
                return earlier, False
            if not await self.jobs.claim_key(request.owner, key, job_id, now(), self.claimant):
                # A concurrent request with the same key claimed it first.
                earlier = await self._earlier(request, fingerprint)
                if earlier is None:
                    raise IdempotentRequestInProgress(key)
                return earlier, False
        try:
            return await self._create(request, job_id, options, info, fingerprint), True
        except ConnectionFailure:
            # The database went away mid-write: the job may have been stored. The key stays
            # with it, so a retry finds that job (or, if it was not stored, waits for the
            # claim to time out) instead of creating a second one.
            raise
        except BaseException:
            if key is not None:
                await self.jobs.release_key(request.owner, key, job_id)
            raise

    async def _create(
        self,
        request: NewJob,
        job_id: str,
        options: dict[str, Any],
        info: ImageInfo | None,
        fingerprint: str,
    ) -> Document:
        entry = self.catalog.get(request.model)
        image = None
        if info is not None and request.image is not None:
            file_id = await self.images.put(
                request.image, media_type=info.media_type, owner=request.owner
            )
            image = info.stored(file_id)
        at = now()
        traceparent = request.span.traceparent()
        job = new_job_document(
            job_id=job_id,
            owner=request.owner,
            name=request.name,
            model=request.model,
            task=entry.spec.task,
            options=options,
            image=image,
            idempotency_key=request.idempotency_key,
            fingerprint=fingerprint,
            traceparent=traceparent,
            at=at,
        )
        outbox = [events.created(job, traceparent)]
        if request.execute:
            execution = Execution.next(1, at + self._deadline())
            job.update(self._queued_fields(execution, at, traceparent))
            job["execution_ids"] = [execution.execution_id]
            outbox.append(events.execution_requested(job, execution, at, traceparent))
        job["outbox"] = [event.to_document() for event in outbox]
        job["outbox_pending"] = True
        try:
            await self.jobs.insert(job)
        except ConnectionFailure:
            raise  # the job may have been stored after all: its image stays
        except BaseException:
            if image is not None:
                await self.images.delete(image["file_id"])
            raise
        log.info(
            "job created", extra={**_fields(job), "model": job["model"], "status": job["status"]}
        )
        return job

    async def _earlier(self, request: NewJob, fingerprint: str) -> Document | None:
        """The job an earlier request with this key created; None when the key is free."""
        key = request.idempotency_key
        assert key is not None
        holder = await self.jobs.key_holder(request.owner, key)
        if holder is None:
            return None
        earlier = await self.jobs.get(holder["job_id"], request.owner)
        if earlier is None:
            # Claimed, but the job is not written yet (a request in flight) or never will be
            # (that request's process died): free the key once the second is likely.
            fresh = now() - as_utc(holder["at"]) < _KEY_CLAIM_TIMEOUT
            if fresh and not self._left_by_predecessor(holder):
                raise IdempotentRequestInProgress(key)
            await self.jobs.release_key(request.owner, key, holder["job_id"])
            return None
        if earlier.get("fingerprint") != fingerprint:
            raise IdempotencyKeyReused(key)
        return earlier

    def _left_by_predecessor(self, claim: Document) -> bool:
        """Claimed under this replica's name by another process: one that died (the name has
        one live process), so the claim is free now, not after _KEY_CLAIM_TIMEOUT."""
        claimant = claim.get("claimant")
        if self.claimant is None or claimant is None or claimant == self.claimant:
            return False
        return bool(claimant.rsplit("/", 1)[0] == self.replica)

    async def put_image(self, owner: str, job_id: str, data: bytes) -> Document:
        job = await self.get(owner, job_id)
        check_image_change(job_id, JobStatus(job["status"]))
        info = await self.inspect(data)
        file_id = await self.images.put(data, media_type=info.media_type, owner=owner)
        for _ in range(_CAS_ATTEMPTS):
            old = job.get("image")
            changed = await self.jobs.change(
                job_id,
                owner=owner,
                sources={JobStatus.NEW},
                where={"image.file_id": old["file_id"]} if old else {"image": None},
                set_fields={"image": info.stored(file_id), "updated_at": now()},
            )
            if changed is not None:
                if old:
                    await self.images.delete(old["file_id"])
                return changed
            job = await self._reread(owner, job_id)
            if JobStatus(job["status"]) is not JobStatus.NEW:
                await self.images.delete(file_id)
                check_image_change(job_id, JobStatus(job["status"]))
        await self.images.delete(file_id)
        raise RuntimeError(f"job {job_id}: the image kept changing under us")

    async def execute(self, owner: str, job_id: str, span: Span) -> Document:
        job = await self.get(owner, job_id)
        for _ in range(_CAS_ATTEMPTS):
            check_execute(job_id, JobStatus(job["status"]), job.get("image") is not None)
            at = now()
            execution = Execution.next(job["attempt"] + 1, at + self._deadline())
            trace = span.traceparent(continuing=job.get("traceparent"))
            changed = await self.jobs.change(
                job_id,
                owner=owner,
                sources={JobStatus.NEW},
                where={"image.file_id": job["image"]["file_id"]},
                set_fields=self._queued_fields(execution, at, trace),
                push={"execution_ids": execution.execution_id},
                events=[events.execution_requested(job, execution, at, trace)],
            )
            if changed is not None:
                log.info("job QUEUED", extra=_fields(changed))
                return changed
            job = await self._reread(owner, job_id)
        raise RuntimeError(f"job {job_id}: kept changing under us")

    async def cancel(self, owner: str, job_id: str, reason: str | None, span: Span) -> Document:
        job = await self.get(owner, job_id)
        check_cancel(job_id, JobStatus(job["status"]))
        at = now()
        trace = span.traceparent(continuing=job.get("traceparent"))
        changed = await self.jobs.change(
            job_id,
            owner=owner,
            sources=CANCELLABLE,
            set_fields={
                "status": JobStatus.CANCELLED.value,
                "updated_at": at,
                "deadline": None,
                "traceparent": trace,
            },
            events=[events.cancelled(job_id, reason or "cancelled by the client", at, trace)],
        )
        if changed is None:
            job = await self._reread(owner, job_id)
            check_cancel(job_id, JobStatus(job["status"]))
            raise RuntimeError(f"job {job_id}: kept changing under us")
        log.info("job CANCELLED", extra=_fields(changed))
        return changed

    async def delete(self, owner: str, job_id: str, span: Span) -> None:
        """Mark deleted (cancelling an active job first); the relay purges it once published."""
        for _ in range(_CAS_ATTEMPTS):
            job = await self.get(owner, job_id)
            status = JobStatus(job["status"])
            at = now()
            trace = span.traceparent(continuing=job.get("traceparent"))
            outbox: list[OutboxEvent] = []
            fields: dict[str, Any] = {
                "deleted": True,
                "updated_at": at,
                "deadline": None,
            }
            if status in CANCELLABLE and status is not JobStatus.NEW:
                outbox.append(events.cancelled(job_id, "the job was deleted", at, trace))
                fields["status"] = JobStatus.CANCELLED.value
            outbox.append(events.deleted(job_id, at, trace))
            changed = await self.jobs.change(
                job_id, owner=owner, sources={status}, set_fields=fields, events=outbox
            )
            if changed is not None:
                if job.get("image"):
                    await self.images.delete(job["image"]["file_id"])
                if job.get("idempotency_key") is not None:  # free for a new job
                    await self.jobs.release_key(owner, job["idempotency_key"], job_id)
                log.info("job deleted", extra={"job_id": job_id, "trace_id": trace_id(trace)})
                return
        raise RuntimeError(f"job {job_id}: kept changing under us")

    # --- helpers ---

    def _deadline(self) -> timedelta:
        return timedelta(seconds=self.limits.execution_deadline_seconds)

    @staticmethod
    def _queued_fields(execution: Execution, at: Any, traceparent: str) -> dict[str, Any]:
        return {
            "status": JobStatus.QUEUED.value,
            "attempt": execution.attempt,
            "execution_id": execution.execution_id,
            "deadline": execution.deadline,
            "updated_at": at,
            "traceparent": traceparent,
            "error": None,
        }

    async def _reread(self, owner: str, job_id: str) -> Document:
        job = await self.jobs.get(job_id, owner)
        if job is None:
            raise JobNotFound(job_id)
        return job


def _fields(job: Document) -> dict[str, Any]:
    """What finds a job's log lines: its id and the trace of its latest change."""
    return {"job_id": job["_id"], "trace_id": trace_id(job.get("traceparent"))}


__all__ = [
    "ExecuteNeedsImage",
    "IdempotencyKeyReused",
    "IllegalTransition",
    "JobNotFound",
    "JobService",
    "Limits",
    "NewJob",
    "NoResult",
]
