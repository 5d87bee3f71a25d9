"""Kafka for every service: client configuration, topic setup, and what every consumer
does with a message (poll, read its headers, decode it, set it aside in the dead-letter
topic)."""

import logging
from collections.abc import Mapping
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from inference_common.events import Envelope, Headers, dead_letter_record, from_record
from inference_common.replica import ReplicaSlot
from inference_common.settings import CommonSettings

log = logging.getLogger(__name__)


class ConsumedMessage(Protocol):
    """What consumers read of a confluent_kafka.Message (tests pass plain objects)."""

    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...
    def headers(self) -> Any: ...


def client_config(settings: CommonSettings) -> dict[str, Any]:
    config: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "security.protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_sasl_mechanism:
        config["sasl.mechanism"] = settings.kafka_sasl_mechanism
        config["sasl.username"] = settings.kafka_sasl_username or ""
        password = settings.kafka_sasl_password
        config["sasl.password"] = password.get_secret_value() if password else ""
    if settings.kafka_ssl_ca_location:
        config["ssl.ca.location"] = settings.kafka_ssl_ca_location
    return config


def producer_config(settings: CommonSettings, **overrides: Any) -> dict[str, Any]:
    """Idempotent and ordered per partition; batched by linger instead of a flush per event."""
    return {
        **client_config(settings),
        "enable.idempotence": True,
        "acks": "all",
        "max.in.flight.requests.per.connection": 5,
        "linger.ms": 2,
        "compression.type": "lz4",
        **overrides,
    }


def consumer_config(settings: CommonSettings, group_id: str, **overrides: Any) -> dict[str, Any]:
    """At-least-once: offsets are committed by the caller once the work is durable."""
    return {
        **client_config(settings),
        "group.id": group_id,
        "session.timeout.ms": settings.kafka_session_timeout_ms,
        "heartbeat.interval.ms": settings.kafka_heartbeat_interval_ms,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "partition.assignment.strategy": "cooperative-sticky",
        "isolation.level": "read_committed",
        **overrides,
    }


def static_member(settings: CommonSettings, replica: ReplicaSlot, topic: str) -> dict[str, Any]:
    """A service's own group: joined as a static member, the replica gets its partitions back
    as soon as it restarts. The classic protocol: KIP-848's keeps a killed static member's
    partitions until its session ends (measured in docs/faults.md).

    The id names the subscribed topic too: the broker hands a static member that rejoins its
    previous assignment, so a member of the same group and name on another topic (a changed
    TOPIC_JOBS, or tests with topics of their own) would be given partitions it does not read.
    """
    if not settings.kafka_static_membership:
        return {}
    return {"group.instance.id": f"{replica.name}.{topic}"}


def ensure_topics(settings: CommonSettings, timeout: float = 30.0) -> None:
    """Create our topics when missing; an existing topic is left as it is."""
    admin = AdminClient(client_config(settings))
    existing = set(admin.list_topics(timeout=timeout).topics)
    wanted = [settings.topic_jobs, settings.topic_results, settings.topic_dead_letter]
    missing = [
        NewTopic(name, settings.topic_partitions, settings.topic_replication_factor)
        for name in wanted
        if name not in existing
    ]
    if not missing:
        return
    for name, future in admin.create_topics(missing, request_timeout=timeout).items():
        try:
            future.result(timeout=timeout)
        except Exception as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise RuntimeError(f"cannot create topic {name}: {exc}") from exc


def consume_available(consumer: Consumer, max_messages: int, timeout: float) -> list[Message]:
    """Up to `max_messages`: waits at most `timeout` for the first, then takes what is there.

    librdkafka's consume(n, timeout) waits the whole timeout unless n messages arrive, which
    adds that timeout to every event's latency at low load.
    """
    first: list[Message] = consumer.consume(1, timeout=timeout)
    if not first or max_messages <= 1:
        return first
    rest: list[Message] = consumer.consume(max_messages - 1, timeout=0)
    return first + rest


Partition = tuple[str, int]


class BatchConsumer:
    """The consume side every service shares: batches of messages, error events sorted out,
    offsets committed by the caller once its work is durable (at-least-once).

    Synchronous, on one thread: the executor's poll loop calls it directly, the job service's
    asyncio loops through one worker thread (inference_service.adapters.kafka). What each does
    with a batch differs (a thread pool finishing out of order; batched writes) and stays
    theirs.
    """

    def __init__(self, consumer: Consumer) -> None:
        self.consumer = consumer
        self._committed: dict[Partition, int] = {}

    def subscribe(self, topics: list[str], **rebalance_callbacks: Any) -> None:
        self.consumer.subscribe(topics, **rebalance_callbacks)

    def next_batch(self, max_messages: int, timeout: float) -> list[Message]:
        """Messages only: a transient error event is logged; a fatal one raises
        KafkaException, as the consumer cannot go on."""
        messages = []
        for message in consume_available(self.consumer, max_messages, timeout):
            error = message.error()
            if error is None:
                messages.append(message)
            elif error.fatal():
                raise KafkaException(error)
            else:
                log.warning("consumer error", extra={"error": str(error)})
        return messages

    def commit(self, positions: Mapping[Partition, int], *, asynchronous: bool = False) -> None:
        """Commit each partition's next offset to read. An asynchronous commit leaves out what
        was sent already; a synchronous one repeats it (an earlier one may have failed). A
        failed commit is logged: the next covers it, or the messages are processed again."""
        offsets = [
            TopicPartition(topic, partition, offset)
            for (topic, partition), offset in positions.items()
            if not asynchronous or self._committed.get((topic, partition)) != offset
        ]
        if not offsets:
            return
        try:
            if asynchronous:  # two calls: the client's types tell them apart by a literal
                self.consumer.commit(offsets=offsets, asynchronous=True)
            else:
                self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            log.warning("commit failed; the next one covers it", extra={"error": str(exc)})
            return
        self._committed.update(((tp.topic, tp.partition), tp.offset) for tp in offsets)

    def rewind(self, first: Mapping[Partition, int]) -> None:
        """Read each partition again from this offset."""
        for (topic, partition), offset in first.items():
            self.consumer.seek(TopicPartition(topic, partition, offset))

    def forget(self, partitions: list[Partition]) -> None:
        """Revoked or lost: their next owner commits them."""
        for partition in partitions:
            self._committed.pop(partition, None)

    def close(self) -> None:
        """Leaves the group at once, which spares it a session timeout."""
        try:
            self.consumer.close()
        except KafkaException as exc:
            log.warning("closing the consumer failed", extra={"error": str(exc)})


def header_pairs(message: ConsumedMessage) -> Headers:
    """confluent-kafka types headers loosely (list or dict, str or bytes); normalise them."""
    raw = message.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    return [(name, value.encode() if isinstance(value, str) else value) for name, value in pairs]


def decode(message: ConsumedMessage) -> Envelope:
    """The CloudEvent a consumed message carries; InvalidEvent when it is not one of ours."""
    return from_record(message.value(), header_pairs(message), message.key())


def message_position(message: ConsumedMessage) -> tuple[str, int, int]:
    """Topic, partition and offset of a consumed message (an error event has none)."""
    topic, partition, offset = message.topic(), message.partition(), message.offset()
    if topic is None or partition is None or offset is None:
        raise ValueError("an error event has no position")
    return topic, partition, offset


def dead_letter_copy(
    message: ConsumedMessage, error: str
) -> tuple[bytes | None, bytes | None, Headers]:
    """Key, value and headers for the dead-letter topic: the original, plus why and where
    from (`dead_letter_record`). Logs why the message is set aside."""
    topic, partition, offset = message_position(message)
    log.warning(
        "message dead-lettered",
        extra={"error": error, "topic": topic, "partition": partition, "offset": offset},
    )
    return dead_letter_record(
        message.key(), message.value(), header_pairs(message), error, (topic, partition, offset)
    )
