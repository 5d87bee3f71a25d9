"""OutboxRelay: publishes the events waiting in job documents, then removes exactly those.

At-least-once: an event is removed only after Kafka acknowledged it, so a crash in between
publishes it again with the same id (consumers deduplicate by id). Per job, events go out in
outbox order on one partition (the job id is the key) through the idempotent producer.
One relay at a time publishes (a lease in MongoDB), so replicas never race each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from inference_common.events import Envelope, to_envelope, to_record, utcnow
from inference_common.tracecontext import trace_id
from inference_service.domain.events import Channel, OutboxEvent
from inference_service.metrics import ServiceMetrics
from inference_service.storage.images import ImageStore
from inference_service.storage.jobs import Document, JobRepository
from inference_service.storage.leases import LeaseStore
from inference_service.workers.kafka_io import BlockingLane

log = logging.getLogger(__name__)

LEASE_NAME = "outbox-relay"


@dataclass
class RelayConfig:
    topics: dict[Channel, str]
    producer: dict[str, Any]
    batch_size: int = 500
    poll_interval: float = 1.0
    lease_seconds: float = 30.0
    # The longest a batch may wait for acknowledgements (the producer's message timeout).
    delivery_timeout: float = 10.0


@dataclass
class _Batch:
    """What one drain produced and what Kafka answered, per event id."""

    sent: dict[str, Envelope] = field(default_factory=dict)
    outcomes: dict[str, KafkaError | None] = field(default_factory=dict)
    pending: int = 0

    def callback(self, event_id: str) -> Callable[[KafkaError | None, Message], None]:
        def delivered(error: KafkaError | None, _message: Message) -> None:
            self.outcomes[event_id] = error
            self.pending -= 1

        return delivered


class OutboxWrites:
    """The jobs that got new outbox events since the relay last looked, and its wake-up.

    The relay reads these by `_id`; a scan for every pending outbox (which FerretDB answers by
    decoding every job) runs only once per poll interval, to recover what a restart or a Kafka
    outage left behind.
    """

    def __init__(self) -> None:
        self.wakeup = asyncio.Event()
        self._jobs: dict[str, None] = {}  # insertion-ordered set

    def __call__(self, job_id: str) -> None:
        self._jobs[job_id] = None
        self.wakeup.set()

    def __len__(self) -> int:
        return len(self._jobs)

    def clear(self) -> None:
        """Forget the jobs written so far (another replica's scan will find them)."""
        self._jobs.clear()

    def take(self, limit: int) -> list[str]:
        taken = list(self._jobs)[:limit]
        for job_id in taken:
            del self._jobs[job_id]
        if self._jobs:
            self.wakeup.set()  # more than one batch was written: come straight back
        return taken


class OutboxRelay:
    def __init__(
        self,
        jobs: JobRepository,
        images: ImageStore,
        leases: LeaseStore,
        config: RelayConfig,
        writes: OutboxWrites,
        *,
        producer_factory: Callable[[dict[str, Any]], Producer] = Producer,
        metrics: ServiceMetrics | None = None,
        holder: str | None = None,
    ) -> None:
        self.jobs = jobs
        self.images = images
        self.leases = leases
        self.config = config
        self.writes = writes
        self._scanned_at = float("-inf")
        # The replica's name (stable across its restarts) renews the lease its crash left.
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._producer_factory = producer_factory
        self._producer: Producer | None = None
        self._lane = BlockingLane("outbox-relay")
        self.metrics = metrics or ServiceMetrics()

    async def run(self, stop: asyncio.Event) -> None:
        self._producer = self._producer_factory(self.config.producer)
        try:
            while not stop.is_set():
                # Clear before draining: a write during the drain wakes the next round at once.
                self.writes.wakeup.clear()
                full = False
                try:
                    holder = await self.leases.acquire(
                        LEASE_NAME, self.holder, self.config.lease_seconds
                    )
                    if holder:
                        full = await self.drain_once() >= self.config.batch_size
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("outbox relay round failed; retrying")
                    await _sleep_or_stop(stop, self.config.poll_interval)
                    continue
                if not holder:
                    # Another replica publishes, and its scan finds this one's writes: keeping
                    # their ids would grow without bound, and waking at each one would try
                    # for the lease (a database write) once per write.
                    self.writes.clear()
                    await _sleep_or_stop(stop, self.config.poll_interval)
                elif not full:
                    await _wait_any(stop, self.writes.wakeup, self.config.poll_interval)
        finally:
            await self._close()

    async def drain_once(self) -> int:
        """Publish one batch of pending outboxes; returns how many jobs it looked at."""
        producer = self._producer
        assert producer is not None, "run() creates the producer"
        pending = await self._pending()
        if not pending:
            return 0
        batch = _Batch()
        for job in pending:
            for entry in job.get("outbox", []):
                await self._produce(producer, batch, OutboxEvent.from_document(entry))
        await self._await_deliveries(producer, batch)
        for job in pending:
            await self._settle(job, batch)
        return len(pending)

    async def _pending(self) -> list[Document]:
        now = time.monotonic()
        if now - self._scanned_at >= self.config.poll_interval:
            self._scanned_at = now
            return await self.jobs.pending_outboxes(self.config.batch_size)
        found = [
            await self.jobs.pending_outbox(job_id)
            for job_id in self.writes.take(self.config.batch_size)
        ]
        return [job for job in found if job is not None]

    async def _produce(self, producer: Producer, batch: _Batch, event: OutboxEvent) -> None:
        cloudevent = event.cloudevent()
        batch.sent[event.id] = to_envelope(cloudevent)
        record = to_record(cloudevent)
        headers: list[tuple[str, str | bytes | None]] = list(record.headers)
        while True:
            try:
                producer.produce(
                    self.config.topics[event.channel],
                    key=record.key,
                    value=record.value,
                    headers=headers,
                    on_delivery=batch.callback(event.id),
                )
                batch.pending += 1
                return
            except BufferError:
                # The local queue is full: let deliveries drain it, then go on.
                await self._lane.call(producer.poll, 0.1)

    async def _await_deliveries(self, producer: Producer, batch: _Batch) -> None:
        # The message timeout bounds this: every produced event gets a callback by then.
        deadline = asyncio.get_running_loop().time() + self.config.delivery_timeout + 5
        while batch.pending > 0 and asyncio.get_running_loop().time() < deadline:
            await self._lane.call(producer.poll, 0.05)

    async def _settle(self, job: Document, batch: _Batch) -> None:
        """Remove the delivered prefix of the job's outbox; keep the rest, in order."""
        entries: list[Document] = list(job.get("outbox", []))
        delivered: list[Document] = []
        for entry in entries:
            error = batch.outcomes.get(entry["id"], KafkaError(KafkaError._MSG_TIMED_OUT))
            if error is not None:
                fields = _log_fields(job["_id"], entry, batch.sent.get(entry["id"]))
                log.warning("event not delivered; it stays in the outbox: %s", error, extra=fields)
                break
            delivered.append(entry)
            self._published(job["_id"], entry, batch.sent[entry["id"]])
        if len(delivered) < len(entries):
            self.metrics.outbox_undelivered.inc(len(entries) - len(delivered))
        if delivered or not entries:
            # An empty outbox still flagged (a crash between the two updates) is cleared too.
            await self.jobs.remove_delivered(job["_id"], delivered)
        if job.get("deleted") and len(delivered) == len(entries):
            purged = await self.jobs.purge_deleted(job["_id"])
            if purged is not None and purged.get("image"):
                await self.images.delete(purged["image"]["file_id"])

    def _published(self, job_id: str, entry: Document, envelope: Envelope) -> None:
        self.metrics.outbox_published.labels(envelope.type.short).inc()
        self.metrics.outbox_lag.observe(max(0.0, (utcnow() - envelope.time).total_seconds()))
        log.debug("event published", extra=_log_fields(job_id, entry, envelope))

    async def _close(self) -> None:
        with contextlib.suppress(Exception):
            await self.leases.release(LEASE_NAME, self.holder)
        if self._producer is not None:
            # Nothing is lost by not waiting: undelivered events are still in the outbox.
            await self._lane.call(self._producer.flush, 2.0)
            self._producer = None
        self._lane.close()


def _log_fields(job_id: str, entry: Document, envelope: Envelope | None) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "trace_id": trace_id(envelope.traceparent) if envelope else None,
        "event_id": entry["id"],
        "event_type": entry["type"],
    }


async def _wait_any(stop: asyncio.Event, wakeup: asyncio.Event, timeout: float) -> None:
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wakeup.wait())]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
