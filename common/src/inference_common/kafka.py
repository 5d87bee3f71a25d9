"""Kafka client configuration and topic setup, the same for every service."""

from typing import Any

from confluent_kafka import Consumer, Message
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from inference_common.replica import ReplicaSlot
from inference_common.settings import CommonSettings


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


def static_member(settings: CommonSettings, replica: ReplicaSlot) -> dict[str, Any]:
    """A service's own group: joined as a static member, the replica gets its partitions back
    as soon as it restarts. The classic protocol: KIP-848's keeps a killed static member's
    partitions until its session ends (measured in docs/faults.md)."""
    if not settings.kafka_static_membership:
        return {}
    return {"group.instance.id": replica.name}


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
