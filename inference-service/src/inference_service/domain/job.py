"""The Job: its state, and every change to it as the lifecycle table allows.

Each operation returns a `Change` (the job before and after, and the events it raises) for the
job store to save as one compare-and-set, or refuses: an API request with IllegalTransition,
an executor's result that is stale or a duplicate with None (it is ignored).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from inference_common.tracecontext import child_traceparent
from inference_service.domain import events
from inference_service.domain.events import Execution, OutboxEvent
from inference_service.domain.lifecycle import (
    CANCELLABLE,
    Action,
    IllegalTransition,
    JobStatus,
    allows,
    require,
    target_of,
)


@dataclass(frozen=True)
class StoredImage:
    """An image in the image store, and what validation learned about it."""

    uri: str
    media_type: str
    size: int
    width: int
    height: int
    sha256: str

    def claim_check(self) -> dict[str, Any]:
        """What events carry in `image`: where the bytes are and how to check them."""
        return {
            "uri": self.uri,
            "sha256": self.sha256,
            "size": self.size,
            "media_type": self.media_type,
            "width": self.width,
            "height": self.height,
        }


@dataclass(frozen=True)
class JobError:
    code: str
    message: str


@dataclass(frozen=True)
class JobResult:
    execution_id: str
    attempt: int
    executor: str
    model: str
    result: dict[str, Any]
    timings: dict[str, Any]
    completed_at: datetime


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    deadline_seconds: float

    def may_retry(self, attempt: int) -> bool:
        return attempt < self.max_attempts

    def deadline(self, attempt: int, requested_at: datetime) -> datetime:
        """When `attempt` is overdue: each attempt gets twice the time of the one before, so a
        job whose request waits behind a backlog gets fewer retries piled on (60, 120, 240 s)."""
        return requested_at + timedelta(seconds=self.seconds_for(attempt))

    def seconds_for(self, attempt: int) -> float:
        return float(self.deadline_seconds * 2 ** (attempt - 1))


@dataclass(frozen=True)
class RetentionPolicy:
    """How long a finished job keeps its image and its result, counted from when it
    finished (docs/retention.md). A job that asked to keep its image keeps it as long as
    its result."""

    image_seconds: float
    result_seconds: float

    def images_before(self, at: datetime) -> datetime:
        """Images of jobs that finished before this are due."""
        return at - timedelta(seconds=self.image_seconds)

    def results_before(self, at: datetime) -> datetime:
        return at - timedelta(seconds=self.result_seconds)

    @property
    def images_at_once(self) -> bool:
        """Images go as their job is done: the fold removes them, not a later sweep."""
        return self.image_seconds <= 0


@dataclass(frozen=True)
class JobFilter:
    """What `GET /jobs` may ask for, besides the owner."""

    statuses: Collection[JobStatus] = ()
    model: str | None = None
    task: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None


@dataclass(frozen=True)
class Change:
    """One state change: saved with its events in one write, or not at all."""

    before: Job | None  # None: the job is new
    after: Job
    events: tuple[OutboxEvent, ...] = ()
    # Every status it moved the job into, in order (a start and a completion folded together
    # pass RUNNING on the way to DONE); None: the one `entered`.
    passed: tuple[JobStatus, ...] | None = None

    @property
    def fields(self) -> dict[str, Any]:
        """The attributes that differ from `before` (all of them for a new job)."""
        return {
            f.name: getattr(self.after, f.name)
            for f in dataclasses.fields(Job)
            if self.before is None or getattr(self.before, f.name) != getattr(self.after, f.name)
        }

    @property
    def entered(self) -> JobStatus | None:
        """The status this change moved the job into, if it moved it."""
        if self.before is not None and self.before.status is self.after.status:
            return None
        return self.after.status

    @property
    def statuses(self) -> tuple[JobStatus, ...]:
        """The statuses this change moved the job into, in order."""
        if self.passed is not None:
            return self.passed
        return () if self.entered is None else (self.entered,)

    def then(self, later: Change) -> Change:
        """This change followed by one made on its result: saved together in one write."""
        assert later.before is self.after, "changes chain only on each other's result"
        passed = self.statuses + later.statuses
        return Change(self.before, later.after, self.events + later.events, passed)


@dataclass(frozen=True)
class Job:
    id: str
    owner: str
    name: str
    model: str
    task: str
    options: dict[str, Any]
    status: JobStatus
    created_at: datetime
    updated_at: datetime
    traceparent: str
    fingerprint: str
    image: StoredImage | None = None
    idempotency_key: str | None = None
    attempt: int = 0
    execution_id: str | None = None
    # Every execution ever requested: a late `completed` of an earlier attempt still counts.
    execution_ids: tuple[str, ...] = ()
    deadline: datetime | None = None
    error: JobError | None = None
    result: JobResult | None = None
    deleted: bool = False
    # Retention: keep the image as long as the result (asked at creation); when the image's
    # bytes were removed; when the result was purged.
    keep_image: bool = False
    image_deleted_at: datetime | None = None
    purged_at: datetime | None = None
    # The result events folded in, by id: a redelivered one changes nothing.
    applied_events: tuple[str, ...] = ()
    # Incremented by every change: the store's compare-and-set compares it.
    version: int = 0

    # --- creation ---

    @classmethod
    def create(
        cls,
        *,
        job_id: str,
        owner: str,
        name: str,
        model: str,
        task: str,
        options: dict[str, Any],
        image: StoredImage | None,
        idempotency_key: str | None,
        fingerprint: str,
        traceparent: str,
        at: datetime,
        callback: dict[str, str] | None = None,
        keep_image: bool = False,
    ) -> Change:
        """`callback` (url and events) is announced in the `created` event, not kept here: the
        webhook dispatcher learns from it, without a read, whether the job has one."""
        job = cls(
            id=job_id,
            owner=owner,
            name=name,
            model=model,
            task=task,
            options=options,
            status=JobStatus.NEW,
            created_at=at,
            updated_at=at,
            traceparent=traceparent,
            fingerprint=fingerprint,
            image=image,
            idempotency_key=idempotency_key,
            keep_image=keep_image,
        )
        return Change(None, job, (events.created(job, traceparent, callback),))

    # --- the API's requests: refused with IllegalTransition ---

    def execute(self, at: datetime, policy: RetryPolicy, traceparent: str) -> Change:
        """Only a NEW job with its image (a retry is the sweeper's or the folder's business)."""
        require(self.id, Action.EXECUTE, self.status)
        if self.image is None:
            raise IllegalTransition(
                self.id,
                self.status,
                Action.EXECUTE.value,
                "the job has no image yet: PUT /jobs/{job_id}/image first",
            )
        return self._new_execution(Action.EXECUTE, at, policy, traceparent, error=None)

    def change_image(self, image: StoredImage, at: datetime) -> Change:
        require(self.id, Action.CHANGE_IMAGE, self.status)
        return self._change(Action.CHANGE_IMAGE, image=image, updated_at=at)

    def cancel(self, reason: str, at: datetime, traceparent: str) -> Change:
        require(self.id, Action.CANCEL, self.status)
        return self._change(
            Action.CANCEL,
            events.cancelled(self.id, reason, at, traceparent),
            updated_at=at,
            deadline=None,
            traceparent=traceparent,
        )

    def delete(self, at: datetime, traceparent: str) -> Change:
        """Marked deleted (an active job is cancelled first), its result dropped at once; the
        record is removed once its events are out. The caller removes the image's bytes."""
        require(self.id, Action.DELETE, self.status)
        raised: list[OutboxEvent] = []
        job = self
        if self.status in CANCELLABLE and self.status is not JobStatus.NEW:
            raised.append(events.cancelled(self.id, "the job was deleted", at, traceparent))
            job = dataclasses.replace(job, status=JobStatus.CANCELLED)
        raised.append(events.deleted(self.id, at, traceparent))
        after = dataclasses.replace(
            job, deleted=True, result=None, updated_at=at, deadline=None, version=self.version + 1
        )
        return Change(self, after, tuple(raised))

    # --- the executors' results: None when stale or already applied ---

    def start(self, event_id: str, execution_id: str, at: datetime) -> Change | None:
        # Only the current execution: a late start of an abandoned attempt means nothing.
        if not self._applies(Action.START, event_id) or execution_id != self.execution_id:
            return None
        return self._change(Action.START, updated_at=at, applied_events=self._applied(event_id))

    def complete(
        self, event_id: str, result: JobResult, at: datetime, *, drop_image: bool = False
    ) -> Change | None:
        """`drop_image`: the image goes with this change (the retention policy removes images
        once their job is done, and this job did not ask to keep its own); the caller removes
        the bytes. No `purged` event: `completed` and `image_deleted_at` say it."""
        # Any attempt of this job may deliver the answer, even one given up on.
        if not self._applies(Action.COMPLETE, event_id):
            return None
        if result.execution_id not in self.execution_ids:
            return None
        dropped = {"image_deleted_at": at} if drop_image and self.drops_image_when_done else {}
        return self._change(
            Action.COMPLETE,
            result=result,
            error=None,
            deadline=None,
            updated_at=at,
            applied_events=self._applied(event_id),
            **dropped,
        )

    def fail(
        self,
        event_id: str,
        execution_id: str,
        error: JobError,
        *,
        retryable: bool,
        attempt: int,
        policy: RetryPolicy,
        at: datetime,
        traceparent: str | None = None,
    ) -> Change | None:
        """FAILED, or QUEUED again when the failure may be retried (the new attempt's events
        carry `traceparent`: the span that decided it, when there is one)."""
        if not self._applies(Action.FAIL, event_id) or execution_id != self.execution_id:
            return None
        if retryable and policy.may_retry(attempt):
            return self._new_execution(
                Action.RETRY,
                at,
                policy,
                traceparent or child_traceparent(self.traceparent),
                applied_events=self._applied(event_id),
            )
        return self._change(
            Action.FAIL,
            error=error,
            deadline=None,
            updated_at=at,
            applied_events=self._applied(event_id),
        )

    # --- the deadline sweeper ---

    def overdue(self, at: datetime) -> bool:
        return (
            not self.deleted
            and allows(Action.EXPIRE, self.status)
            and self.deadline is not None
            and self.deadline < at
        )

    def retry(self, at: datetime, policy: RetryPolicy, traceparent: str | None = None) -> Change:
        """Attempt n+1, announced by a new execution_requested (carrying `traceparent`, the
        span that decided it, else a child of the job's latest)."""
        require(self.id, Action.RETRY, self.status)
        trace = traceparent or child_traceparent(self.traceparent)
        return self._new_execution(Action.RETRY, at, policy, trace)

    def expire(self, at: datetime, policy: RetryPolicy, traceparent: str | None = None) -> Change:
        """No attempts left: FAILED with deadline_exceeded, announced as job.failed."""
        require(self.id, Action.EXPIRE, self.status)
        assert self.execution_id is not None
        trace = traceparent or child_traceparent(self.traceparent)
        return self._change(
            Action.EXPIRE,
            events.deadline_failed(self.id, self.execution_id, self.attempt, at, trace),
            error=JobError(
                "deadline_exceeded",
                f"no result in {self.attempt} attempt(s), "
                f"the last within {policy.seconds_for(self.attempt):g} s",
            ),
            deadline=None,
            updated_at=at,
        )

    # --- retention ---

    @property
    def holds_image(self) -> bool:
        """Its image's bytes are (still) in the image store."""
        return self.image is not None and self.image_deleted_at is None

    @property
    def drops_image_when_done(self) -> bool:
        return self.holds_image and not self.keep_image

    def due_for_purge(self, at: datetime, policy: RetentionPolicy) -> tuple[str, ...]:
        """What retention removes at `at`: `image`, `result`, both or nothing. Only a finished
        job, never one an executor may still need: finished is final. `updated_at` is when it
        finished (a purge leaves it as it is)."""
        if self.deleted or not allows(Action.PURGE, self.status):
            return ()
        results_due = self.updated_at < policy.results_before(at)
        image_due = results_due or (
            not self.keep_image and self.updated_at < policy.images_before(at)
        )
        removed = ("image",) if self.holds_image and image_due else ()
        return removed + (("result",) if self.result is not None and results_due else ())

    def purge(
        self, at: datetime, policy: RetentionPolicy, traceparent: str | None = None
    ) -> Change | None:
        """Drop what is due (the caller removes the image's bytes first); None: nothing is.
        The `purged` event carries `traceparent` (the sweep's span), else a child of the job's
        latest."""
        removed = self.due_for_purge(at, policy)
        if not removed:
            return None
        fields: dict[str, Any] = {}
        if "image" in removed:
            fields["image_deleted_at"] = at
        if "result" in removed:
            fields.update(result=None, purged_at=at)
        trace = traceparent or child_traceparent(self.traceparent)
        event = events.purged(self.id, removed, at, trace)
        return self._change(Action.PURGE, event, **fields)

    # --- helpers ---

    def _applies(self, action: Action, event_id: str) -> bool:
        return (
            not self.deleted and allows(action, self.status) and event_id not in self.applied_events
        )

    def _applied(self, event_id: str) -> tuple[str, ...]:
        return (*self.applied_events, event_id)

    def _new_execution(
        self,
        action: Action,
        at: datetime,
        policy: RetryPolicy,
        traceparent: str,
        **fields: Any,
    ) -> Change:
        attempt = self.attempt + 1
        execution = Execution.next(attempt, policy.deadline(attempt, at))
        after = self._moved(
            action,
            attempt=execution.attempt,
            execution_id=execution.execution_id,
            execution_ids=(*self.execution_ids, execution.execution_id),
            deadline=execution.deadline,
            updated_at=at,
            traceparent=traceparent,
            **fields,
        )
        return Change(self, after, (events.execution_requested(after, execution, at, traceparent),))

    def _change(self, action: Action, *raised: OutboxEvent, **fields: Any) -> Change:
        return Change(self, self._moved(action, **fields), raised)

    def _moved(self, action: Action, **fields: Any) -> Job:
        return dataclasses.replace(
            self, status=target_of(action, self.status), version=self.version + 1, **fields
        )
