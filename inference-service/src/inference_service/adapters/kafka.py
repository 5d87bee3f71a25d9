"""Kafka through confluent-kafka: the event publisher, the consumers and the dead-letter topic.

Every blocking client call runs on the client's own thread (BlockingLane), off the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from inference_common.events import dead_letter_record, to_record
from inference_common.kafka import BatchConsumer, header_pairs, message_position
from inference_service.domain.events import Channel, OutboxEvent
from inference_service.ports import BusError, Record

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


class BlockingLane:
    """One worker thread: calls on a client stay ordered and never occupy the loop.

    The thread starts with the first call and stops on close(); a restarted worker simply
    calls again.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._executor: ThreadPoolExecutor | None = None

    async def call(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self.name)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None


def _records(messages: list[Message]) -> list[Record]:
    return [
        Record(*message_position(message), message.key(), message.value(), header_pairs(message))
        for message in messages
    ]


class KafkaPublisher:
    """The idempotent producer the relay publishes through; each event keyed by its job."""

    def __init__(
        self,
        config: dict[str, Any],
        topics: dict[Channel, str],
        delivery_timeout: float,
        *,
        producer_factory: Callable[[dict[str, Any]], Producer] = Producer,
    ) -> None:
        self.config = config
        self.topics = topics
        self.delivery_timeout = delivery_timeout
        self._producer_factory = producer_factory
        self._producer: Producer | None = None
        self._lane = BlockingLane("outbox-relay")

    async def publish(self, events: Sequence[OutboxEvent]) -> dict[str, str | None]:
        if self._producer is None:
            self._producer = self._producer_factory(self.config)
        producer = self._producer
        outcomes: dict[str, str | None] = {}
        for event in events:
            await self._produce(producer, event, outcomes)
        # The message timeout bounds this: every produced event gets a callback by then.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.delivery_timeout + 5
        while len(outcomes) < len(events) and loop.time() < deadline:
            await self._lane.call(producer.poll, 0.05)
        return outcomes

    async def _produce(
        self, producer: Producer, event: OutboxEvent, outcomes: dict[str, str | None]
    ) -> None:
        record = to_record(event.cloudevent())
        headers: list[tuple[str, str | bytes | None]] = list(record.headers)

        def delivered(error: KafkaError | None, _message: Message) -> None:
            outcomes[event.id] = None if error is None else str(error)

        while True:
            try:
                producer.produce(
                    self.topics[event.channel],
                    key=record.key,
                    value=record.value,
                    headers=headers,
                    on_delivery=delivered,
                )
                return
            except BufferError:
                # The local queue is full: let deliveries drain it, then go on.
                await self._lane.call(producer.poll, 0.1)

    async def close(self) -> None:
        if self._producer is not None:
            # Nothing is lost by not waiting: undelivered events are still in the outbox.
            await self._lane.call(self._producer.flush, 2.0)
            self._producer = None
        self._lane.close()


class _KafkaConsumer:
    """A BatchConsumer (inference_common.kafka) driven from the event loop: created at the
    first read, every call on its own thread."""

    def __init__(
        self,
        config: dict[str, Any],
        lane: str,
        consumer_factory: Callable[[dict[str, Any]], Consumer],
    ) -> None:
        self.config = config
        self._consumer_factory = consumer_factory
        self._consumer: BatchConsumer | None = None
        self._lane = BlockingLane(lane)

    async def _open(self) -> BatchConsumer:
        if self._consumer is None:
            consumer = BatchConsumer(self._consumer_factory(self.config))
            try:
                await self._joined(consumer)
            except KafkaException:
                await self._lane.call(consumer.close)
                raise
            self._consumer = consumer
        return self._consumer

    async def _joined(self, consumer: BatchConsumer) -> None:
        """Subscribe or assign: what each kind of reader does first."""

    async def next_batch(self, max_records: int, timeout: float) -> list[Record]:
        consumer = await self._open()
        try:
            messages = await self._lane.call(consumer.next_batch, max_records, timeout)
        except KafkaException as exc:
            raise BusError(str(exc)) from exc
        return _records(messages)

    async def close(self) -> None:
        if self._consumer is not None:
            await self._lane.call(self._consumer.close)
            self._consumer = None
        self._lane.close()


class KafkaGroupConsumer(_KafkaConsumer):
    """A consumer-group member: batches of records, offsets committed once they are applied."""

    def __init__(
        self,
        config: dict[str, Any],
        topic: str,
        *more_topics: str,
        consumer_factory: Callable[[dict[str, Any]], Consumer] = Consumer,
    ) -> None:
        super().__init__(config, f"consumer-{topic}", consumer_factory)
        self.topics = [topic, *more_topics]

    async def _joined(self, consumer: BatchConsumer) -> None:
        await self._lane.call(consumer.subscribe, self.topics)

    async def commit(self, positions: Mapping[tuple[str, int], int]) -> None:
        """A failed commit only means the records are folded again."""
        if self._consumer is not None and positions:
            await self._lane.call(self._consumer.commit, positions)

    async def rewind(self, records: Sequence[Record]) -> None:
        """Seek each partition back to its first record not yet applied."""
        first: dict[tuple[str, int], int] = {}
        for record in records:
            first.setdefault((record.topic, record.partition), record.offset)
        if self._consumer is not None:
            await self._lane.call(self._consumer.rewind, first)


class KafkaTail(_KafkaConsumer):
    """Reads topics from their end as of start (manual assignment, no group): each replica
    sees every event produced after it started."""

    def __init__(
        self,
        config: dict[str, Any],
        topics: list[str],
        *,
        consumer_factory: Callable[[dict[str, Any]], Consumer] = Consumer,
    ) -> None:
        super().__init__(config, "live-events", consumer_factory)
        self.topics = topics

    async def start(self) -> None:
        """Raises BusError while Kafka cannot be reached."""
        try:
            await self._open()
        except KafkaException as exc:
            raise BusError(str(exc)) from exc

    async def _joined(self, consumer: BatchConsumer) -> None:
        await self._lane.call(self._assign_at_end, consumer.consumer)

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


class KafkaDeadLetters:
    def __init__(
        self,
        config: dict[str, Any],
        topic: str,
        *,
        producer_factory: Callable[[dict[str, Any]], Producer] = Producer,
    ) -> None:
        self.config = config
        self.topic = topic
        self._producer_factory = producer_factory
        self._producer: Producer | None = None
        self._lane = BlockingLane("dead-letters")

    async def send(self, record: Record, error: str) -> None:
        if self._producer is None:
            self._producer = self._producer_factory(self.config)
        producer = self._producer
        outcome: list[KafkaError | None] = []
        key, value, headers = dead_letter_record(
            record.key,
            record.value,
            record.headers,
            error,
            (record.topic, record.partition, record.offset),
        )
        header_list: list[tuple[str, str | bytes | None]] = list(headers)
        producer.produce(
            self.topic,
            key=key,
            value=value,
            headers=header_list,
            on_delivery=lambda err, _msg: outcome.append(err),
        )
        while not outcome:
            await self._lane.call(producer.poll, 0.1)
        if outcome[0] is not None:
            raise BusError(str(outcome[0]))

    async def close(self) -> None:
        if self._producer is not None:
            await self._lane.call(self._producer.flush, 2.0)
            self._producer = None
        self._lane.close()


class KafkaAdmin:
    def __init__(self, config: dict[str, Any]) -> None:
        self._admin = AdminClient(config)

    async def reachable(self) -> bool:
        try:
            await asyncio.to_thread(self._admin.list_topics, timeout=2.0)
        except Exception:
            return False
        return True
