"""LiveEvents: one Kafka consumer feeding every server-sent-event subscriber of this replica.

It reads the jobs and results topics from their end as of start-up (manual assignment, no
consumer group: each replica sees everything) and fans each event out to the subscribers of
its job, or of its owner. Nothing is replayed: a client that wants the past reads the job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from cloudevents.core.bindings import kafka as kafka_binding
from cloudevents.core.formats.json import JSONFormat
from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from inference_common.events import Envelope, EventType, InvalidEvent, to_envelope
from inference_common.kafka import consume_available, header_pairs
from inference_service.workers.kafka_io import BlockingLane

log = logging.getLogger(__name__)

_FORMAT = JSONFormat()
OwnerLookup = Callable[[str], Awaitable[str | None]]


@dataclass(frozen=True)
class LiveEvent:
    id: str
    type: str
    job_id: str
    owner: str | None
    structured: str
    ends_job_stream: bool


def ends_job_stream(envelope: Envelope, max_attempts: int) -> bool:
    """After this event the job changes no more (a retryable failure with attempts left
    is followed by a new attempt, so it does not end the stream)."""
    if envelope.type in (EventType.COMPLETED, EventType.CANCELLED, EventType.DELETED):
        return True
    if envelope.type is EventType.FAILED:
        error = envelope.data.get("error") or {}
        attempt = envelope.data.get("attempt", max_attempts)
        return not (error.get("retryable") and attempt < max_attempts)
    return False


class Subscription:
    def __init__(self, owner: str, job_id: str | None, size: int) -> None:
        self.owner = owner
        self.job_id = job_id
        self._queue: asyncio.Queue[LiveEvent | None] = asyncio.Queue(size)
        self.closed = False

    def offer(self, event: LiveEvent) -> None:
        if self.closed:
            return
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            # A client this far behind reconnects and re-reads the job instead.
            log.warning("subscriber of %s too slow; closing its stream", self.job_id or self.owner)
            self.close()

    def close(self) -> None:
        """End the stream now, dropping whatever is still queued."""
        if self.closed:
            return
        self.closed = True
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(None)

    def finish(self) -> None:
        """End the stream after what is already queued."""
        if self.closed:
            return
        try:
            self._queue.put_nowait(None)
            self.closed = True
        except asyncio.QueueFull:
            self.close()

    async def next(self, timeout: float) -> LiveEvent | None:
        """The next event; None once closed; TimeoutError when nothing came in `timeout`."""
        return await asyncio.wait_for(self._queue.get(), timeout)


class LiveEvents:
    def __init__(
        self,
        consumer_config: dict[str, Any],
        topics: list[str],
        owner_of: OwnerLookup,
        max_attempts: int,
        *,
        queue_size: int = 1000,
        consumer_factory: Callable[[dict[str, Any]], Consumer] = Consumer,
    ) -> None:
        self.consumer_config = consumer_config
        self.topics = topics
        self.owner_of = owner_of
        self.max_attempts = max_attempts
        self.queue_size = queue_size
        self._consumer_factory = consumer_factory
        self._subscriptions: set[Subscription] = set()
        self._owners: OrderedDict[str, str | None] = OrderedDict()
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._lane = BlockingLane("live-events")
        self.ready = asyncio.Event()

    @property
    def subscribers(self) -> int:
        return len(self._subscriptions)

    def subscribe(self, owner: str, job_id: str | None = None) -> Subscription:
        subscription = Subscription(owner, job_id, self.queue_size)
        self._subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)
        subscription.close()

    def close_all(self) -> None:
        for subscription in list(self._subscriptions):
            self.unsubscribe(subscription)

    async def run(self, stop: asyncio.Event) -> None:
        consumer = self._consumer_factory(self.consumer_config)
        try:
            while not stop.is_set() and not self.ready.is_set():
                try:
                    await self._lane.call(self._assign_at_end, consumer)
                    self.ready.set()
                except KafkaException as exc:
                    log.warning("live events cannot reach Kafka yet: %s", exc)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), 2.0)
            while not stop.is_set():
                # Each message as it comes: a batch waits, and mixes the two topics' order.
                messages = await self._lane.call(consume_available, consumer, 500, 0.5)
                for message in messages:
                    await self._dispatch(message)
        finally:
            self.close_all()
            await self._lane.call(consumer.close)
            self._lane.close()

    def _assign_at_end(self, consumer: Consumer) -> None:
        """Explicit end offsets, so every event produced after start-up is seen."""
        assignment: list[TopicPartition] = []
        for topic in self.topics:
            metadata = consumer.list_topics(topic, timeout=5.0).topics[topic]
            if metadata.error is not None:
                raise KafkaException(metadata.error)
            for partition in metadata.partitions:
                _low, high = consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=5.0
                )
                assignment.append(TopicPartition(topic, partition, high))
        consumer.assign(assignment)

    async def _dispatch(self, message: Message) -> None:
        if message.error() is not None or not self._subscriptions:
            return
        event = await self._decode(message)
        if event is None or self._already_seen(event.id):
            return
        for subscription in list(self._subscriptions):
            if subscription.job_id == event.job_id:
                subscription.offer(event)
                if event.ends_job_stream:
                    self._subscriptions.discard(subscription)
                    subscription.finish()
            elif subscription.job_id is None and subscription.owner == event.owner:
                subscription.offer(event)

    async def _decode(self, message: Message) -> LiveEvent | None:
        headers = {name.lower(): raw or b"" for name, raw in header_pairs(message)}
        record = kafka_binding.KafkaMessage(
            headers=headers, key=message.key(), value=message.value() or b""
        )
        try:
            cloudevent = kafka_binding.from_kafka(record, _FORMAT)
            envelope = to_envelope(cloudevent)
        except (InvalidEvent, ValueError, KeyError, TypeError) as exc:
            log.debug("live events: skipping a message that is not ours: %s", exc)
            return None
        except Exception as exc:  # the SDK raises several unrelated types for bad input
            log.debug("live events: skipping an undecodable message: %s", exc)
            return None
        owner = await self._owner(envelope)
        return LiveEvent(
            id=envelope.id,
            type=envelope.type.value,
            job_id=envelope.subject,
            owner=owner,
            structured=_FORMAT.write(cloudevent).decode(),
            ends_job_stream=ends_job_stream(envelope, self.max_attempts),
        )

    async def _owner(self, envelope: Envelope) -> str | None:
        job_id = envelope.subject
        if envelope.type is EventType.CREATED and isinstance(envelope.data.get("owner"), str):
            self._remember_owner(job_id, envelope.data["owner"])
        if job_id in self._owners:
            self._owners.move_to_end(job_id)
            return self._owners[job_id]
        if not any(s.job_id is None for s in self._subscriptions):
            return None
        owner = await self.owner_of(job_id)
        self._remember_owner(job_id, owner)
        return owner

    def _remember_owner(self, job_id: str, owner: str | None) -> None:
        self._owners[job_id] = owner
        while len(self._owners) > 10_000:
            self._owners.popitem(last=False)

    def _already_seen(self, event_id: str) -> bool:
        """At-least-once delivery repeats events; a subscriber sees each id once."""
        if event_id in self._seen:
            return True
        self._seen[event_id] = None
        while len(self._seen) > 10_000:
            self._seen.popitem(last=False)
        return False
