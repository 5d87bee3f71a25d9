"""The stack is real: a CloudEvent through Kafka, a document and an index through pymongo."""

import time

import pytest
from cloudevents.core.bindings import kafka as kafka_binding
from cloudevents.core.formats.json import JSONFormat
from confluent_kafka import Consumer, Producer

from inference_common.events import EventType, from_record, new_event, to_record
from inference_common.kafka import consumer_config, ensure_topics, producer_config
from inference_common.mongo import sync_client
from inference_common.settings import CommonSettings

pytestmark = pytest.mark.integration
JOB_ID = "fedcba9876543210fedcba9876543210"


def consume(settings: CommonSettings, topic: str, count: int, timeout: float = 30.0):
    consumer = Consumer(consumer_config(settings, group_id=f"smoke-{topic}"))
    consumer.subscribe([topic])
    messages = []
    deadline = time.monotonic() + timeout
    try:
        while len(messages) < count and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                messages.append(message)
    finally:
        consumer.close()
    return messages


def test_cloudevent_round_trip_through_kafka_in_both_modes(settings: CommonSettings) -> None:
    ensure_topics(settings)
    data = {"job_id": JOB_ID, "deleted_at": "2026-11-23T12:00:00Z"}
    binary = new_event(EventType.DELETED, "/inference-service", JOB_ID, data)
    structured = kafka_binding.to_structured(
        new_event(EventType.DELETED, "/inference-service", JOB_ID, data), JSONFormat()
    )
    producer = Producer(producer_config(settings))
    record = to_record(binary)
    producer.produce(settings.topic_jobs, record.value, record.key, headers=record.headers)
    producer.produce(
        settings.topic_jobs,
        structured.value,
        JOB_ID,
        headers=list(structured.headers.items()),
    )
    assert producer.flush(30) == 0

    messages = consume(settings, settings.topic_jobs, 2)
    envelopes = [from_record(m.value(), m.headers(), m.key()) for m in messages]
    assert [e.data for e in envelopes] == [data, data]
    assert envelopes[0].id == binary.get_attributes()["id"]
    assert {m.key() for m in messages} == {JOB_ID.encode()}
    assert len({m.partition() for m in messages}) == 1  # same key, same partition, in order


def test_mongodb_api_writes_reads_and_indexes(settings: CommonSettings) -> None:
    client = sync_client(settings)
    try:
        collection = client[settings.mongodb_database]["smoke"]
        collection.create_index([("owner", 1), ("created_at", -1)], name="owner_created")
        collection.insert_many([{"_id": f"j{i}", "owner": "a", "created_at": i} for i in range(5)])
        newest = collection.find({"owner": "a"}).sort("created_at", -1).limit(2)
        assert [d["_id"] for d in newest] == ["j4", "j3"]
        assert "owner_created" in collection.index_information()
        result = collection.update_one({"_id": "j1", "owner": "a"}, {"$set": {"owner": "b"}})
        assert result.modified_count == 1
        assert collection.count_documents({"owner": "b"}) == 1
    finally:
        client.close()
