"""Server-sent events fed from Kafka: one job's stream, a client's stream, and API keys."""

from __future__ import annotations

import contextlib

import httpx
import pytest

from inference_common.events import EventType
from inference_common.kafka import ensure_topics
from tests.integration.service.harness import (
    BASE,
    Executor,
    RunningService,
    SseReader,
    TopicReader,
    assert_problem,
    image_bytes,
    new_job,
    post_job,
    requests_for,
    service_settings,
    start_service,
    wait_for,
)

pytestmark = pytest.mark.integration


def test_a_job_stream_sees_the_executor_and_ends_when_done(
    service: RunningService, jobs_topic: TopicReader, executor: Executor
) -> None:
    job = new_job(service.client)
    stream = SseReader(f"{service.url}{BASE}/jobs/{job['id']}/events")
    stream.wait_ready()
    assert stream.content_type.startswith("text/event-stream")
    service.client.post(f"/jobs/{job['id']}/execution")
    (request,) = requests_for(jobs_topic, job["id"], 1)
    # The feed reads both topics; Kafka orders events within a topic only, so the executor
    # answers once the stream has shown the request (an executor reads it first anyway).
    wait_for(
        lambda: EventType.EXECUTION_REQUESTED.value in [e["event"] for e in stream.events],
        what="the request on the stream",
    )
    started_id = executor.started(request)
    executor.completed(request)
    assert stream.ended.wait(20), "the stream did not end after completed"

    # `created` may or may not be out yet when the stream starts; no history is replayed.
    events = [e for e in stream.events if e["event"] != EventType.CREATED.value]
    assert [event["event"] for event in events] == [
        EventType.EXECUTION_REQUESTED.value,
        EventType.STARTED.value,
        EventType.COMPLETED.value,
    ]
    started = events[1]
    assert started["id"] == started_id
    cloudevent = started["data"]
    assert cloudevent["specversion"] == "1.0" and cloudevent["id"] == started_id
    assert cloudevent["type"] == EventType.STARTED.value and cloudevent["subject"] == job["id"]
    assert cloudevent["data"]["execution_id"] == request["execution_id"]


def test_a_stream_of_a_finished_job_ends_at_once(service: RunningService) -> None:
    job = new_job(service.client)
    service.client.post(f"/jobs/{job['id']}/cancellation")
    stream = SseReader(f"{service.url}{BASE}/jobs/{job['id']}/events")
    assert stream.ended.wait(10) and stream.status == 200 and stream.events == []


def test_api_keys_isolate_clients(isolated_env: dict[str, str]) -> None:
    settings = service_settings(api_keys="alice-key:alice,bob-key:bob")
    ensure_topics(settings)
    service = start_service(settings)
    alice = httpx.Client(base_url=service.url + BASE, headers={"X-API-Key": "alice-key"})
    bob = httpx.Client(base_url=service.url + BASE, headers={"X-API-Key": "bob-key"})
    bob_stream = SseReader(f"{service.url}{BASE}/events", {"X-API-Key": "bob-key"})
    alice_stream = SseReader(f"{service.url}{BASE}/events", {"X-API-Key": "alice-key"})
    try:
        assert_problem(service.client.get("/jobs"), 401)
        assert_problem(httpx.get(service.url + BASE + "/jobs", headers={"X-API-Key": "x"}), 401)
        bob_stream.wait_ready()
        alice_stream.wait_ready()

        mine = post_job(alice, image=image_bytes(), headers={"Idempotency-Key": "k"}).json()
        theirs = post_job(bob, image=image_bytes(), headers={"Idempotency-Key": "k"}).json()
        assert mine["id"] != theirs["id"]  # keys are per client
        for path in ("", "/result", "/image", "/events"):
            assert_problem(bob.get(f"/jobs/{mine['id']}{path}"), 404, "job-not-found")
        assert_problem(bob.post(f"/jobs/{mine['id']}/execution"), 404)
        assert_problem(bob.post(f"/jobs/{mine['id']}/cancellation"), 404)
        assert_problem(bob.delete(f"/jobs/{mine['id']}"), 404)
        assert [job["id"] for job in bob.get("/jobs").json()["items"]] == [theirs["id"]]
        assert [job["id"] for job in alice.get("/jobs").json()["items"]] == [mine["id"]]
        assert alice.get(f"/jobs/{mine['id']}").status_code == 200

        alice.post(f"/jobs/{mine['id']}/execution")
        wait_for(lambda: len(alice_stream.events) >= 2, 20, "alice's events")
        wait_for(lambda: len(bob_stream.events) >= 1, 20, "bob's events")
        with contextlib.suppress(AssertionError):
            wait_for(lambda: len(bob_stream.events) > 1, 1.0)
        assert {e["data"]["subject"] for e in alice_stream.events} == {mine["id"]}
        assert [e["data"]["subject"] for e in bob_stream.events] == [theirs["id"]]
        assert [e["event"] for e in alice_stream.events] == [
            EventType.CREATED.value,
            EventType.EXECUTION_REQUESTED.value,
        ]
    finally:
        alice.close()
        bob.close()
        service.stop()
    assert alice_stream.ended.wait(10) and bob_stream.ended.wait(10)
