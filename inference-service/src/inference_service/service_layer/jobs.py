"""The job use cases behind the API: each reads the job, asks it for a change, saves that.

A save is a compare-and-set on the job's version: when another writer got there first, the
job is read again and asked again (the Job refuses what its new status does not allow).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from inference_common.image_store import ImageKey, ImageMissing, ImageStore
from inference_common.job_ids import new_job_id
from inference_common.tracecontext import Span, trace_id
from inference_service.domain.catalog import ModelCatalog
from inference_service.domain.clock import as_utc, now
from inference_service.domain.cursor import Cursor
from inference_service.domain.images import inspect_image
from inference_service.domain.job import Change, Job, JobFilter, RetryPolicy, StoredImage
from inference_service.domain.jobs import ImageInfo, request_fingerprint
from inference_service.domain.lifecycle import Action, JobStatus, require
from inference_service.domain.webhooks import Callback, EventsWanted
from inference_service.ports import JobStore, KeyHolder, StoreUnavailable, WebhookStore
from inference_service.service_layer.writer import JobWriter

log = logging.getLogger(__name__)

# A compare-and-set that lost a race re-reads and tries again; more than this is a bug.
_CAS_ATTEMPTS: Final = 3
# A claimed Idempotency-Key whose job is still not written after this was abandoned.
_KEY_CLAIM_TIMEOUT: Final = timedelta(seconds=30)


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


class KeptChanging(RuntimeError):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id}: kept changing under us")


class NoResult(Exception):
    """The job has no result (yet); carries what the client needs to decide what next."""

    def __init__(self, job: Job) -> None:
        self.job_id = job.id
        self.status = job.status
        self.error = job.error
        super().__init__(_no_result_detail(self.status))


class Purged(Exception):
    """Retention removed what was asked for (the API: 410 Gone); the job is still there."""

    def __init__(self, job: Job, what: str, at: datetime) -> None:
        self.job_id = job.id
        self.status = job.status
        self.removed_at = at
        super().__init__(f"the job's {what} was removed under the retention policy")


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


@dataclass(frozen=True)
class NewJob:
    owner: str
    name: str
    model: str
    options: dict[str, Any]
    image: bytes | None
    execute: bool = False
    idempotency_key: str | None = None
    keep_image: bool = False
    # The request's span: the job's events continue its trace.
    span: Span = field(default_factory=Span)
    # Where to POST the job's events (checked by the API against the target policy).
    callback: tuple[str, EventsWanted] | None = None


@dataclass(eq=False)
class JobService:
    writer: JobWriter
    images: ImageStore
    catalog: ModelCatalog
    limits: Limits
    policy: RetryPolicy
    _: KW_ONLY
    # Who claims Idempotency-Keys: this replica's name (one live process at a time holds
    # it, inference_common.replica) and this process.
    replica: str | None = None
    webhooks: WebhookStore | None = None
    claimant: str | None = field(init=False)

    def __post_init__(self) -> None:
        self.claimant = f"{self.replica}/{uuid.uuid4().hex}" if self.replica else None

    @property
    def jobs(self) -> JobStore:
        return self.writer.store

    # --- reads ---

    async def get(self, owner: str, job_id: str) -> Job:
        job = await self.jobs.get(job_id)
        if job is None or job.deleted or job.owner != owner:
            raise JobNotFound(job_id)
        return job

    async def owner_of(self, job_id: str) -> str | None:
        job = await self.jobs.get(job_id)
        return job.owner if job is not None else None

    async def page(
        self, owner: str, where: JobFilter, cursor: str | None, limit: int
    ) -> tuple[list[Job], str | None]:
        after = Cursor.decode(cursor) if cursor else None
        found = await self.jobs.page(owner, where, after, limit + 1)
        if len(found) <= limit:
            return found, None
        last = found[limit - 1]
        return found[:limit], Cursor(last.created_at, last.id).encode()

    async def result(self, owner: str, job_id: str) -> Job:
        job = await self.get(owner, job_id)
        if job.purged_at is not None:
            raise Purged(job, "result", job.purged_at)
        if job.status is not JobStatus.DONE or job.result is None:
            raise NoResult(job)
        return job

    async def image(self, owner: str, job_id: str) -> tuple[bytes, str]:
        job = await self.get(owner, job_id)
        if job.image is None:
            raise JobNotFound(job_id)
        if job.image_deleted_at is not None:
            raise Purged(job, "image", job.image_deleted_at)
        try:
            data = await asyncio.to_thread(self.images.get, job.image.uri)
        except ImageMissing:
            raise JobNotFound(job_id) from None
        return data, job.image.media_type

    # --- writes ---

    async def inspect(self, data: bytes) -> ImageInfo:
        """Validate off the event loop: decoding a large image takes milliseconds."""
        return await asyncio.to_thread(
            inspect_image,
            data,
            max_bytes=self.limits.max_image_bytes,
            max_pixels=self.limits.max_image_pixels,
        )

    async def create(self, request: NewJob) -> tuple[Job, bool]:
        """The job and whether it is new (False: an idempotent retry of an earlier create)."""
        entry = self.catalog.get(request.model)
        options = entry.options_with_defaults(request.options)
        if request.execute and request.image is None:
            raise ExecuteNeedsImage()
        info = await self.inspect(request.image) if request.image is not None else None
        fingerprint = request_fingerprint(
            request.name,
            request.model,
            options,
            info.sha256 if info else None,
            request.execute,
            keep_image=request.keep_image,
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
            await self._keep_callback(request, job_id)
            job = await self._create(
                request, job_id, task=entry.spec.task, options=options, info=info, fp=fingerprint
            )
        except StoreUnavailable:
            # The database went away mid-write: the job may have been stored. The key stays
            # with it, so a retry finds that job (or, if it was not stored, waits for the
            # claim to time out) instead of creating a second one.
            raise
        except BaseException:
            if key is not None:
                await self.jobs.release_key(request.owner, key, job_id)
            raise
        return job, True

    async def _keep_callback(self, request: NewJob, job_id: str) -> None:
        """Before the job: the dispatcher finds the callback when the job's first event comes."""
        if request.callback is None:
            return
        if self.webhooks is None:
            raise RuntimeError("this service was built without a webhook store")
        url, events = request.callback
        await self.webhooks.add_callback(Callback(job_id, request.owner, url, events))

    async def _create(
        self,
        request: NewJob,
        job_id: str,
        *,
        task: str,
        options: dict[str, Any],
        info: ImageInfo | None,
        fp: str,
    ) -> Job:
        image = None
        if info is not None and request.image is not None:
            image = await self._put_image(job_id, request.image, info)
        at = now()
        traceparent = request.span.traceparent()
        change = Job.create(
            job_id=job_id,
            owner=request.owner,
            name=request.name,
            model=request.model,
            task=task,
            options=options,
            image=image,
            idempotency_key=request.idempotency_key,
            fingerprint=fp,
            traceparent=traceparent,
            at=at,
            callback=_callback_fields(request.callback),
            keep_image=request.keep_image,
        )
        if request.execute:
            change = change.then(change.after.execute(at, self.policy, traceparent))
        try:
            await self.writer.add(change)
        except StoreUnavailable:
            raise  # the job may have been stored after all: its image stays
        except BaseException:
            if image is not None:
                await asyncio.to_thread(self.images.delete, image.uri)
            raise
        job = change.after
        log.info("job created", extra={**_fields(job), "model": job.model, "status": job.status})
        return job

    async def _put_image(self, job_id: str, data: bytes, info: ImageInfo) -> StoredImage:
        key = ImageKey(info.sha256, job_id)
        uri = await asyncio.to_thread(self.images.put, key, data, info.media_type)
        return info.stored(uri)

    async def _earlier(self, request: NewJob, fingerprint: str) -> Job | None:
        """The job an earlier request with this key created; None when the key is free."""
        key = request.idempotency_key
        assert key is not None
        holder = await self.jobs.key_holder(request.owner, key)
        if holder is None:
            return None
        earlier = await self.jobs.get(holder.job_id)
        if earlier is None or earlier.deleted or earlier.owner != request.owner:
            # Claimed, but the job is not written yet (a request in flight) or never will be
            # (that request's process died): free the key once the second is likely.
            fresh = now() - as_utc(holder.at) < _KEY_CLAIM_TIMEOUT
            if fresh and not self._left_by_predecessor(holder):
                raise IdempotentRequestInProgress(key)
            await self.jobs.release_key(request.owner, key, holder.job_id)
            return None
        if earlier.fingerprint != fingerprint:
            raise IdempotencyKeyReused(key)
        return earlier

    def _left_by_predecessor(self, claim: KeyHolder) -> bool:
        """Claimed under this replica's name by another process: one that died (the name has
        one live process), so the claim is free now, not after _KEY_CLAIM_TIMEOUT."""
        if self.claimant is None or claim.claimant is None or claim.claimant == self.claimant:
            return False
        return claim.claimant.rsplit("/", 1)[0] == self.replica

    async def put_image(self, owner: str, job_id: str, data: bytes) -> Job:
        job = await self.get(owner, job_id)
        require(job_id, Action.CHANGE_IMAGE, job.status)  # before the bytes are stored
        info = await self.inspect(data)
        image = await self._put_image(job_id, data, info)
        try:
            changed = await self._change(owner, job_id, lambda job: job.change_image(image, now()))
        except BaseException:
            await asyncio.to_thread(self.images.delete, image.uri)
            raise
        if changed.before is not None and changed.before.image is not None:
            await asyncio.to_thread(self.images.delete, changed.before.image.uri)
        return changed.after

    async def execute(self, owner: str, job_id: str, span: Span) -> Job:
        def decide(job: Job) -> Change:
            return job.execute(now(), self.policy, span.traceparent(continuing=job.traceparent))

        job = (await self._change(owner, job_id, decide)).after
        log.info("job QUEUED", extra=_fields(job))
        return job

    async def cancel(self, owner: str, job_id: str, reason: str | None, span: Span) -> Job:
        def decide(job: Job) -> Change:
            trace = span.traceparent(continuing=job.traceparent)
            return job.cancel(reason or "cancelled by the client", now(), trace)

        job = (await self._change(owner, job_id, decide)).after
        log.info("job CANCELLED", extra=_fields(job))
        return job

    async def delete(self, owner: str, job_id: str, span: Span) -> None:
        """Mark deleted (cancelling an active job first) without its result, and remove the
        image's bytes; the relay removes the record once its events are published."""

        def decide(job: Job) -> Change:
            return job.delete(now(), span.traceparent(continuing=job.traceparent))

        job = (await self._change(owner, job_id, decide)).after
        if job.image is not None:
            await asyncio.to_thread(self.images.delete, job.image.uri)
        if job.idempotency_key is not None:  # free for a new job
            await self.jobs.release_key(owner, job.idempotency_key, job_id)
        log.info("job deleted", extra={"job_id": job_id, "trace_id": trace_id(job.traceparent)})

    async def _change(self, owner: str, job_id: str, decide: Callable[[Job], Change]) -> Change:
        """Read, decide, compare-and-set; again on a lost race."""
        for _ in range(_CAS_ATTEMPTS):
            change = decide(await self.get(owner, job_id))
            if await self.writer.save(change):
                return change
        raise KeptChanging(job_id)


def _fields(job: Job) -> dict[str, Any]:
    """What finds a job's log lines: its id and the trace of its latest change."""
    return {"job_id": job.id, "trace_id": trace_id(job.traceparent)}


def _callback_fields(callback: tuple[str, EventsWanted] | None) -> dict[str, str] | None:
    if callback is None:
        return None
    url, events = callback
    return {"url": url, "events": events.value}
