"""Every event the service publishes follows the contract, in order per job, exactly once."""

from __future__ import annotations

import collections
import contextlib

import httpx
import pytest

from inference_common.events import EventType
from inference_common.kafka import ensure_topics
from inference_common.tracecontext import trace_id
from tests.contracts import validate_kafka_event
from tests.integration.service.harness import (
    RunningService,
    TopicReader,
    free_port,
    headers_of,
    image_bytes,
    jobs_in_db,
    new_job,
    post_job,
    service_settings,
    start_service,
    wait_for,
)

pytestmark = pytest.mark.integration

EXPECTED_ORDER = [
    EventType.CREATED.value,
    EventType.EXECUTION_REQUESTED.value,
    EventType.CANCELLED.value,
    EventType.DELETED.value,
]


def exercise(client: httpx.Client, jobs: int) -> list[str]:
    """Each job: create, execute, cancel, delete: four events."""
    ids = []
    for _ in range(jobs):
        job = new_job(client)
        assert client.post(f"/jobs/{job['id']}/execution").status_code == 202
        assert client.post(f"/jobs/{job['id']}/cancellation").status_code == 200
        assert client.delete(f"/jobs/{job['id']}").status_code == 204
        ids.append(job["id"])
    return ids


def test_every_event_matches_the_contract_in_order(
    service: RunningService, jobs_topic: TopicReader
) -> None:
    ids = exercise(service.client, 5)
    messages = jobs_topic.read(len(ids) * 4, settle=1.0)
    assert len(messages) == len(ids) * 4
    per_job: dict[str, list[str]] = collections.defaultdict(list)
    partitions: dict[str, set[int]] = collections.defaultdict(set)
    for message in messages:
        data = validate_kafka_event(message.headers(), message.value())
        headers = headers_of(message)
        assert message.key() == data["job_id"].encode()
        assert headers["ce_source"] == "/inference-service"
        per_job[data["job_id"]].append(headers["ce_type"])
        partitions[data["job_id"]].add(message.partition())
    assert set(per_job) == set(ids)
    for job_id in ids:
        assert per_job[job_id] == EXPECTED_ORDER, job_id
        assert len(partitions[job_id]) == 1


def test_the_request_trace_continues_in_the_events(
    service: RunningService, jobs_topic: TopicReader
) -> None:
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    job = post_job(service.client, image=image_bytes(), headers={"traceparent": parent}).json()
    service.client.post(f"/jobs/{job['id']}/execution")  # no header: the job's trace goes on
    created, requested = jobs_topic.read(2)
    for message in (created, requested):
        traceparent = headers_of(message)["ce_traceparent"]
        assert trace_id(traceparent) == "4bf92f3577b34da6a3ce929d0e0e4736"
        assert traceparent != parent  # a child span, not the caller's own
    other = new_job(service.client)
    messages = jobs_topic.read(3)
    fresh = [headers_of(m)["ce_traceparent"] for m in messages if m.key() == other["id"].encode()]
    assert trace_id(fresh[0]) != "4bf92f3577b34da6a3ce929d0e0e4736"


def test_outbox_survives_kafka_being_away(isolated_env: dict[str, str]) -> None:
    """Kafka unreachable: the API still takes work; later every event goes out exactly once."""
    good = service_settings()
    ensure_topics(good)
    away = service_settings(
        kafka_bootstrap_servers=f"127.0.0.1:{free_port()}",
        relay_delivery_timeout_ms=500,
        run_folder=False,
        run_live=False,
    )
    offline = start_service(away, wait_live=False)
    try:
        ids = exercise(offline.client, 3) + [new_job(offline.client)["id"] for _ in range(3)]
        ready = httpx.get(offline.url + "/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["kafka"] is False
        mongo, jobs = jobs_in_db(good)
        try:
            # Let the relay try (and fail) a few rounds: nothing may be lost or dropped.
            wait_for(lambda: offline.runtime.relay is not None, 5, "relay")
            with contextlib.suppress(AssertionError):
                wait_for(lambda: False, 1.5)
            pending = [
                entry["id"]
                for job in jobs.find({"outbox_pending": True})
                for entry in job["outbox"]
            ]
        finally:
            mongo.close()
        assert len(pending) == 3 * 4 + 3
    finally:
        offline.stop()

    online = start_service(service_settings(service_port=free_port()))
    reader = TopicReader(good, good.topic_jobs)
    try:
        messages = reader.read(len(pending), settle=2.0)
        ids_seen = [headers_of(m)["ce_id"] for m in messages]
        assert sorted(ids_seen) == sorted(pending)  # every one, and each exactly once
        per_job = collections.defaultdict(list)
        for message in messages:
            validate_kafka_event(message.headers(), message.value())
            per_job[message.key().decode()].append(headers_of(message)["ce_type"])
        for job_id in ids[:3]:
            assert per_job[job_id] == EXPECTED_ORDER
        mongo, jobs = jobs_in_db(good)
        try:
            wait_for(lambda: jobs.count_documents({"outbox_pending": True}) == 0, 10, "drained")
            assert jobs.count_documents({}) == 3  # the deleted ones were purged
        finally:
            mongo.close()
    finally:
        reader.close()
        online.stop()
