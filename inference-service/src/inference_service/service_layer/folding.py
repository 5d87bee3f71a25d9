"""Folding the executors' results (started, completed, failed) into their jobs.

Idempotent and monotonic: the Job ignores an event it already applied, or one that is stale
for its state (a late start, a result of an abandoned attempt); the store's compare-and-set
keeps concurrent writers apart. A batch's events for one job are folded into one write.
Events for unknown or deleted jobs change nothing. A message that is not a valid event of
ours goes to the dead-letter topic.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

from inference_common import tracing
from inference_common.contracts import EventSchemas
from inference_common.events import Envelope, EventType, InvalidEvent, from_record
from inference_common.image_store import ImageStore, ImageStoreError
from inference_common.tracecontext import trace_id
from inference_service.domain.clock import as_utc, now
from inference_service.domain.job import (
    Change,
    Job,
    JobError,
    JobResult,
    RetentionPolicy,
    RetryPolicy,
)
from inference_service.domain.lifecycle import JobStatus
from inference_service.metrics import ServiceMetrics
from inference_service.ports import DeadLetters, JobStore, Record
from inference_service.service_layer.writer import JobWriter

log = logging.getLogger(__name__)

RESULT_TYPES: Final = frozenset({EventType.STARTED, EventType.COMPLETED, EventType.FAILED})
# A compare-and-set that lost a race re-reads and folds again; more than this is a bug.
_CAS_ATTEMPTS: Final = 5


class Outcome(StrEnum):
    APPLIED = "applied"
    IGNORED = "ignored"
    DEAD_LETTERED = "dead_lettered"


class PoisonMessage(ValueError):
    """Not something this consumer can ever apply; set aside, never retried."""


@dataclass(eq=False)
class ResultFolding:
    writer: JobWriter
    schemas: EventSchemas
    policy: RetryPolicy
    dead_letters: DeadLetters
    metrics: ServiceMetrics
    # With both, a done job's image is removed as its result is folded, when the retention
    # policy removes images at once: no later sweep, write and event for it.
    images: ImageStore | None = None
    retention: RetentionPolicy | None = None
    counts: dict[Outcome, int] = field(
        default_factory=lambda: dict.fromkeys(Outcome, 0), init=False
    )

    @property
    def jobs(self) -> JobStore:
        return self.writer.store

    async def fold(self, records: Sequence[Record]) -> None:
        """Apply a batch: the poison set aside, each job's events in one write, in order.

        StoreError or BusError when the store or the dead-letter topic failed: folding the
        whole batch again is harmless (what was applied is ignored the second time).
        """
        by_job: dict[str, list[Envelope]] = {}
        for record in records:
            try:
                envelope = self.decode(record.value, record.headers, record.key)
            except PoisonMessage as exc:
                log.warning("dead-lettering %s: %s", record.where, exc)
                await self.dead_letters.send(record, str(exc))
                self._count("invalid", Outcome.DEAD_LETTERED)
                continue
            by_job.setdefault(envelope.subject, []).append(envelope)
        for job_id, envelopes in by_job.items():
            await self._fold_job(job_id, envelopes)

    def decode(
        self,
        value: bytes | None,
        headers: list[tuple[str, bytes | None]] | None,
        key: bytes | None,
    ) -> Envelope:
        try:
            envelope = from_record(value, headers, key)
        except InvalidEvent as exc:
            raise PoisonMessage(str(exc)) from exc
        if envelope.type not in RESULT_TYPES:
            raise PoisonMessage(f"{envelope.type.value} does not belong on the results topic")
        problems = self.schemas.problems(envelope.type, envelope.data)
        if problems:
            raise PoisonMessage(f"data breaks {envelope.type.short}: " + "; ".join(problems))
        if envelope.data["job_id"] != envelope.subject:
            raise PoisonMessage("data.job_id differs from the subject")
        return envelope

    async def _fold_job(self, job_id: str, envelopes: list[Envelope]) -> None:
        # A child of the executor's span that published the last of these results.
        with tracing.span(
            "fold",
            parent=envelopes[-1].traceparent,
            kind=tracing.SpanKind.CONSUMER,
            attributes={"job_id": job_id, "events": len(envelopes)},
        ):
            await self._fold_and_save(job_id, envelopes)

    async def _fold_and_save(self, job_id: str, envelopes: list[Envelope]) -> Change | None:
        """The change saved (None when nothing changed)."""
        drop_image = self.images is not None and (
            self.retention is not None and self.retention.images_at_once
        )
        for _ in range(_CAS_ATTEMPTS):
            job = await self.jobs.get(job_id)
            folded, outcomes = self._folded(job, envelopes, drop_image)
            if folded is not None and _drops_image(folded) and not await self._remove(folded):
                # The store failed: the job keeps its image, the retention sweep removes it.
                folded, outcomes = self._folded(job, envelopes, drop_image=False)
            if folded is None or await self.writer.save(folded):
                for envelope, entered in outcomes:
                    outcome = Outcome.IGNORED if entered is None else Outcome.APPLIED
                    self._count(envelope.type.short, outcome)
                    _log_fold(envelope, entered)
                return folded
        raise RuntimeError(f"job {job_id}: kept changing under the result folder")

    def _folded(
        self, job: Job | None, envelopes: list[Envelope], drop_image: bool
    ) -> tuple[Change | None, list[tuple[Envelope, JobStatus | None]]]:
        """The job's events applied in order, as one change, and what each did."""
        folded: Change | None = None
        outcomes: list[tuple[Envelope, JobStatus | None]] = []
        for envelope in envelopes:
            current = folded.after if folded else job
            change = self._apply(current, envelope, drop_image) if current is not None else None
            outcomes.append((envelope, change.after.status if change else None))
            if change is not None:
                folded = folded.then(change) if folded else change
        return folded, outcomes

    async def _remove(self, change: Change) -> bool:
        """The image's bytes, before the save that says they are gone: a crash in between
        leaves a job whose result is folded again from Kafka, and no bytes behind."""
        assert self.images is not None and change.before is not None
        image = change.before.image
        assert image is not None
        try:
            await asyncio.to_thread(self.images.delete, image.uri)
        except ImageStoreError as exc:
            log.warning("cannot remove the done job's image now: %s", exc)
            return False
        if self.retention is not None:
            self.metrics.purged.labels("image").inc()
        return True

    def _apply(self, job: Job, envelope: Envelope, drop_image: bool = False) -> Change | None:
        data = envelope.data
        at = now()
        if envelope.type is EventType.STARTED:
            return job.start(envelope.id, data["execution_id"], at)
        if envelope.type is EventType.COMPLETED:
            result = JobResult(
                execution_id=data["execution_id"],
                attempt=data["attempt"],
                executor=data["executor"],
                model=data["model"],
                result=data["result"],
                timings=data["timings"],
                completed_at=_time(data["completed_at"]),
            )
            return job.complete(envelope.id, result, at, drop_image=drop_image)
        error = data["error"]
        return job.fail(
            envelope.id,
            data["execution_id"],
            JobError(error["code"], error["message"]),
            retryable=bool(error["retryable"]),
            attempt=data["attempt"],
            policy=self.policy,
            at=at,
            traceparent=tracing.traceparent_of(),  # a retry hangs from this fold
        )

    def _count(self, kind: str, outcome: Outcome) -> None:
        self.counts[outcome] += 1
        self.metrics.results_folded.labels(kind, outcome.value).inc()


def _drops_image(change: Change) -> bool:
    return change.before is not None and change.before.holds_image and not change.after.holds_image


def _log_fold(envelope: Envelope, entered: JobStatus | None) -> None:
    data = envelope.data
    fields: dict[str, Any] = {
        "job_id": envelope.subject,
        "trace_id": trace_id(envelope.traceparent),
        "event_id": envelope.id,
        "event_type": envelope.type.short,
        "attempt": data["attempt"],
    }
    if entered is None:
        log.debug("result ignored: a duplicate, or stale for the job's state", extra=fields)
        return
    fields["status"] = entered.value
    if envelope.type is EventType.FAILED:
        fields["error_code"] = data["error"]["code"]
    # RUNNING is a step on the way: only where the job ends up is worth a line by default.
    level = logging.DEBUG if entered is JobStatus.RUNNING else logging.INFO
    log.log(level, "result applied: job %s", entered.value, extra=fields)


def _time(value: str) -> datetime:
    return as_utc(datetime.fromisoformat(value))


def unanswered_starts(records: Sequence[Record]) -> list[Record]:
    """The `started` events with nothing after them for their job here: worth holding a
    moment, so that the job's outcome, usually milliseconds behind, is folded in the same
    write (binary mode tells the type by header, without decoding)."""
    last: dict[bytes | None, Record] = {}
    for record in records:
        last[record.key] = record
    return [
        record
        for record in last.values()
        if dict(record.headers).get("ce_type") == EventType.STARTED.value.encode()
    ]


def positions(records: Sequence[Record], held: Sequence[Record]) -> dict[tuple[str, int], int]:
    """Per partition, the next offset to read once `records` but `held` are folded: up to
    the first held record, or past the last one."""
    found: dict[tuple[str, int], int] = {}
    for record in records:
        place = (record.topic, record.partition)
        found[place] = max(found.get(place, 0), record.offset + 1)
    for record in held:
        place = (record.topic, record.partition)
        found[place] = min(found[place], record.offset)
    return found
