"""ResultFolder: applies the executors' started/completed/failed events to MongoDB.

Idempotent and monotonic: each update is a compare-and-set on the job's status and current
execution, and records the event id it applied (a redelivered event matches nothing). Events
for unknown or deleted jobs change nothing. Offsets are committed only after the write; a
message that is not a valid event of ours goes to the dead-letter topic instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from pymongo.errors import PyMongoError

from inference_common.contracts import EventSchemas
from inference_common.events import Envelope, EventType, InvalidEvent, from_record
from inference_common.kafka import consume_available, dead_letter_copy, header_pairs
from inference_common.tracecontext import trace_id
from inference_service.domain.clock import as_utc, now
from inference_service.domain.lifecycle import ACTIVE, JobStatus
from inference_service.metrics import ServiceMetrics
from inference_service.storage.jobs import JobRepository
from inference_service.workers.executions import ExecutionScheduler
from inference_service.workers.kafka_io import BlockingLane

log = logging.getLogger(__name__)

RESULT_TYPES = frozenset({EventType.STARTED, EventType.COMPLETED, EventType.FAILED})


class Outcome(StrEnum):
    APPLIED = "applied"
    IGNORED = "ignored"
    DEAD_LETTERED = "dead_lettered"


@dataclass
class FolderConfig:
    topic: str
    dead_letter_topic: str
    consumer: dict[str, Any]
    producer: dict[str, Any]
    batch_size: int = 200
    poll_timeout: float = 0.5
    retry_backoff: float = 1.0


class PoisonMessage(ValueError):
    """Not something this consumer can ever apply; set aside, never retried."""


class ResultFolder:
    def __init__(
        self,
        jobs: JobRepository,
        scheduler: ExecutionScheduler,
        schemas: EventSchemas,
        config: FolderConfig,
        *,
        consumer_factory: Callable[[dict[str, Any]], Consumer] = Consumer,
        producer_factory: Callable[[dict[str, Any]], Producer] = Producer,
        on_applied: Callable[[str], None] | None = None,
        metrics: ServiceMetrics | None = None,
    ) -> None:
        self.jobs = jobs
        # Told the job id of every job a result finished (wakes requests waiting for it).
        self._on_applied = on_applied
        self.scheduler = scheduler
        self.schemas = schemas
        self.config = config
        self._consumer_factory = consumer_factory
        self._producer_factory = producer_factory
        self._lane = BlockingLane("result-folder")
        self.counts: dict[Outcome, int] = dict.fromkeys(Outcome, 0)
        self.metrics = metrics or ServiceMetrics()

    # --- the loop ---

    async def run(self, stop: asyncio.Event) -> None:
        consumer = self._consumer_factory(self.config.consumer)
        producer = self._producer_factory(self.config.producer)
        await self._lane.call(consumer.subscribe, [self.config.topic])
        try:
            while not stop.is_set():
                messages = await self._lane.call(
                    consume_available, consumer, self.config.batch_size, self.config.poll_timeout
                )
                if messages:
                    await self._handle_batch(consumer, producer, messages, stop)
        finally:
            await self._lane.call(consumer.close)
            await self._lane.call(producer.flush, 2.0)
            self._lane.close()

    async def _handle_batch(
        self, consumer: Consumer, producer: Producer, messages: list[Message], stop: asyncio.Event
    ) -> None:
        done = 0
        for message in messages:
            if message.error() is not None:
                log.warning("result consumer: %s", message.error())
                done += 1
                continue
            try:
                outcome = await self._handle(producer, message)
            except (PyMongoError, KafkaException) as exc:
                log.warning("cannot fold %s now (%s); will retry", _where(message), exc)
                await self._rewind(consumer, messages[done:])
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.config.retry_backoff)
                break
            self.counts[outcome] += 1
            consumer.store_offsets(message)
            done += 1
        try:
            await self._lane.call(consumer.commit, asynchronous=False)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError._NO_OFFSET:
                log.warning("offset commit failed (the events will be folded again): %s", exc)

    async def _rewind(self, consumer: Consumer, unprocessed: list[Message]) -> None:
        """Seek each partition back to its first message not yet folded."""
        first: dict[tuple[str, int], int] = {}
        for message in unprocessed:
            topic, partition, offset = message.topic(), message.partition(), message.offset()
            if message.error() is None and topic and partition is not None and offset is not None:
                first.setdefault((topic, partition), offset)
        for (topic, partition), offset in first.items():
            await self._lane.call(consumer.seek, TopicPartition(topic, partition, offset))

    async def _handle(self, producer: Producer, message: Message) -> Outcome:
        try:
            envelope = self.decode(message.value(), header_pairs(message), message.key())
        except PoisonMessage as exc:
            await self._dead_letter(producer, message, str(exc))
            self.metrics.results_folded.labels("invalid", Outcome.DEAD_LETTERED.value).inc()
            return Outcome.DEAD_LETTERED
        return await self.apply(envelope)

    # --- decoding and applying, usable without Kafka ---

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

    async def apply(self, envelope: Envelope) -> Outcome:
        if envelope.type is EventType.STARTED:
            entered = await self._started(envelope)
        elif envelope.type is EventType.COMPLETED:
            entered = await self._completed(envelope)
        else:
            entered = await self._failed(envelope)
        outcome = Outcome.IGNORED if entered is None else Outcome.APPLIED
        self.metrics.results_folded.labels(envelope.type.short, outcome.value).inc()
        _log_fold(envelope, entered)
        if entered is not None and entered.terminal and self._on_applied is not None:
            self._on_applied(envelope.subject)
        return outcome

    def _base(self, envelope: Envelope, statuses: frozenset[JobStatus]) -> dict[str, Any]:
        return {
            "deleted": False,
            "status": {"$in": sorted(s.value for s in statuses)},
            "applied_events": {"$ne": envelope.id},
        }

    async def _started(self, envelope: Envelope) -> JobStatus | None:
        data = envelope.data
        conditions = {
            **self._base(envelope, frozenset({JobStatus.QUEUED})),
            # Only the current execution: a late start of an abandoned attempt means nothing.
            "execution_id": data["execution_id"],
        }
        update = {
            "$set": {
                "status": JobStatus.RUNNING.value,
                "started_at": _time(data["started_at"]),
                "executor": data["executor"],
                "updated_at": now(),
            },
            "$push": {"applied_events": envelope.id},
        }
        return (
            JobStatus.RUNNING
            if await self.jobs.fold(envelope.subject, conditions, update)
            else None
        )

    async def _completed(self, envelope: Envelope) -> JobStatus | None:
        data = envelope.data
        conditions = {
            **self._base(envelope, ACTIVE),
            # Any attempt of this job may deliver the answer, even one given up on.
            "execution_ids": data["execution_id"],
        }
        update = {
            "$set": {
                "status": JobStatus.DONE.value,
                "result": {
                    "execution_id": data["execution_id"],
                    "attempt": data["attempt"],
                    "executor": data["executor"],
                    "model": data["model"],
                    "result": data["result"],
                    "timings": data["timings"],
                    "completed_at": _time(data["completed_at"]),
                },
                "error": None,
                "deadline": None,
                "updated_at": now(),
            },
            "$push": {"applied_events": envelope.id},
        }
        return (
            JobStatus.DONE if await self.jobs.fold(envelope.subject, conditions, update) else None
        )

    async def _failed(self, envelope: Envelope) -> JobStatus | None:
        """FAILED, or QUEUED again when the failure may be retried; None when ignored."""
        data = envelope.data
        error = data["error"]
        if error["retryable"] and self.scheduler.policy.may_retry(data["attempt"]):
            job = await self.jobs.get(envelope.subject)
            if job is None or JobStatus(job["status"]) not in ACTIVE:
                return None
            if job["execution_id"] != data["execution_id"]:
                return None
            retried = await self.scheduler.retry(
                job,
                now(),
                where={"applied_events": {"$ne": envelope.id}},
                push={"applied_events": envelope.id},
            )
            return JobStatus.QUEUED if retried else None
        conditions = {**self._base(envelope, ACTIVE), "execution_id": data["execution_id"]}
        update = {
            "$set": {
                "status": JobStatus.FAILED.value,
                "error": {"code": error["code"], "message": error["message"]},
                "deadline": None,
                "updated_at": now(),
            },
            "$push": {"applied_events": envelope.id},
        }
        return (
            JobStatus.FAILED if await self.jobs.fold(envelope.subject, conditions, update) else None
        )

    async def _dead_letter(self, producer: Producer, message: Message, error: str) -> None:
        outcome: list[KafkaError | None] = []
        key, value, headers = dead_letter_copy(message, error)
        header_list: list[tuple[str, str | bytes | None]] = list(headers)
        producer.produce(
            self.config.dead_letter_topic,
            key=key,
            value=value,
            headers=header_list,
            on_delivery=lambda err, _msg: outcome.append(err),
        )
        while not outcome:
            await self._lane.call(producer.poll, 0.1)
        if outcome[0] is not None:
            raise KafkaException(outcome[0])


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


def _where(message: Message) -> str:
    return f"{message.topic()}[{message.partition()}]@{message.offset()}"
