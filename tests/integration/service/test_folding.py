"""The executor's events folded into MongoDB: idempotent, monotonic, poison set aside."""

from __future__ import annotations

import json
import os

import pytest

from inference_common.events import EventType, new_event, to_record
from tests.integration.service.harness import (
    Executor,
    RunningService,
    TopicReader,
    assert_problem,
    headers_of,
    jobs_in_db,
    new_job,
    requests_for,
    wait_for,
    wait_status,
)

pytestmark = pytest.mark.integration


def document(service: RunningService, job_id: str) -> dict:
    mongo, jobs = jobs_in_db(service.settings)
    try:
        return dict(jobs.find_one({"_id": job_id}) or {})
    finally:
        mongo.close()


def barrier(service: RunningService, jobs_topic: TopicReader, executor: Executor) -> None:
    """Everything published before this has been folded: a marker job completes after it.

    Events of different jobs may sit on different partitions, so the marker is completed on
    every partition's behalf by waiting for the folder's consumer lag to reach zero too.
    """
    marker = new_job(service.client, execute=True)
    (request,) = requests_for(jobs_topic, marker["id"], 1)
    executor.completed(request)
    wait_status(service.client, marker["id"], "DONE")
    folder = service.runtime.folding
    assert folder is not None
    counted = sum(folder.counts.values())
    wait_for(lambda: sum(folder.counts.values()) == counted, 5)


def test_duplicates_and_late_events_change_nothing(
    service: RunningService, jobs_topic: TopicReader, executor: Executor
) -> None:
    client = service.client
    job = new_job(client, execute=True)
    (request,) = requests_for(jobs_topic, job["id"], 1)
    executor.started(request)
    wait_status(client, job["id"], "RUNNING")
    completed_id = executor.completed(request)
    done = wait_status(client, job["id"], "DONE")

    executor.completed(request, event_id=completed_id)  # redelivered: same id
    executor.completed(request)  # a second answer with another id
    executor.started(request)  # a late started
    executor.failed(request, "model_error", retryable=False)  # a late failure
    folder = service.runtime.folding
    assert folder is not None
    wait_for(lambda: folder.counts["ignored"] >= 4, 20, "the four late events")

    after = client.get(f"/jobs/{job['id']}").json()
    assert after["status"] == "DONE" and after["updated_at"] == done["updated_at"]
    stored = document(service, job["id"])
    assert stored["applied_events"].count(completed_id) == 1
    assert len(stored["applied_events"]) == 2  # started + completed, once each
    assert client.get(f"/jobs/{job['id']}/result").status_code == 200


def test_completed_before_started_still_finishes(
    service: RunningService, jobs_topic: TopicReader, executor: Executor
) -> None:
    job = new_job(service.client, execute=True)
    (request,) = requests_for(jobs_topic, job["id"], 1)
    executor.completed(request)
    wait_status(service.client, job["id"], "DONE")
    executor.started(request)
    barrier(service, jobs_topic, executor)
    assert service.client.get(f"/jobs/{job['id']}").json()["status"] == "DONE"


def test_a_started_of_another_execution_is_ignored(
    service: RunningService, jobs_topic: TopicReader, executor: Executor
) -> None:
    job = new_job(service.client, execute=True)
    (request,) = requests_for(jobs_topic, job["id"], 1)
    executor.started({**request, "execution_id": "e" * 32})
    barrier(service, jobs_topic, executor)
    assert service.client.get(f"/jobs/{job['id']}").json()["status"] == "QUEUED"


def test_events_for_deleted_or_unknown_jobs_are_ignored(
    service: RunningService, jobs_topic: TopicReader, executor: Executor
) -> None:
    client = service.client
    job = new_job(client, execute=True)
    (request,) = requests_for(jobs_topic, job["id"], 1)
    assert client.delete(f"/jobs/{job['id']}").status_code == 204
    executor.started(request)
    executor.completed(request)
    executor.completed({**request, "job_id": "f" * 32})
    barrier(service, jobs_topic, executor)
    assert_problem(client.get(f"/jobs/{job['id']}"), 404, "job-not-found")
    mongo, jobs = jobs_in_db(service.settings)
    try:
        assert jobs.count_documents({"_id": {"$in": [job["id"], "f" * 32]}, "deleted": False}) == 0
    finally:
        mongo.close()


def test_failures_retry_while_retryable_then_fail(
    service: RunningService, jobs_topic: TopicReader, executor: Executor
) -> None:
    client = service.client
    job = new_job(client, execute=True)
    (first,) = requests_for(jobs_topic, job["id"], 1)
    executor.failed(first, "model_error", retryable=True)
    second = requests_for(jobs_topic, job["id"], 2)[1]
    assert second["attempt"] == 2 and second["execution_id"] != first["execution_id"]
    assert client.get(f"/jobs/{job['id']}").json()["attempt"] == 2

    # The first attempt's failure again (redelivered) must not touch the second attempt.
    executor.failed(first, "model_error", retryable=False)
    executor.failed(second, "image_unreadable", retryable=False)
    failed = wait_status(client, job["id"], "FAILED")
    assert failed["error"] == {"code": "image_unreadable", "message": "it broke"}
    problem = assert_problem(client.get(f"/jobs/{job['id']}/result"), 409, "job-failed")
    assert problem["job_status"] == "FAILED" and problem["error"]["code"] == "image_unreadable"


def test_poison_messages_go_to_the_dead_letter_topic(
    service: RunningService, jobs_topic: TopicReader, executor: Executor
) -> None:
    job_id = "a" * 32
    executor.raw(b"not json at all", key=b"x")
    executor.raw(b'{"hello": "world"}', headers=[("content-type", b"application/json")])
    wrong_schema = new_event(EventType.COMPLETED, "/executor-service", job_id, {"job_id": job_id})
    record = to_record(wrong_schema)
    executor.raw(record.value, record.key, record.headers)
    wrong_topic = to_record(
        new_event(
            EventType.DELETED, "/executor-service", job_id, {"job_id": job_id, "deleted_at": "x"}
        )
    )
    executor.raw(wrong_topic.value, wrong_topic.key, wrong_topic.headers)
    unknown = [(k, b"io.cvinference.job.exploded.v1" if k == "ce_type" else v) for k, v in
               wrong_topic.headers]  # fmt: skip
    executor.raw(wrong_topic.value, b"unknown-type", unknown)
    # Near the producer's limit and incompressible: too large to copy whole with the headers.
    huge = os.urandom(999_900)
    executor.raw(huge, b"huge")

    dead = TopicReader(service.settings, service.settings.topic_dead_letter)
    try:
        messages = dead.read(6, settle=0.5)
    finally:
        dead.close()
    assert len(messages) == 6
    by_key = {message.key(): message for message in messages}
    assert "unknown event type" in headers_of(by_key[b"unknown-type"])["dlq_error"]
    cut = headers_of(by_key[b"huge"])
    assert cut["dlq_value_bytes"] == "999900" and huge.startswith(by_key[b"huge"].value())
    by_value = {message.value(): message for message in messages}
    assert by_value[b"not json at all"].key() == b"x"  # key and value kept byte for byte
    for message in messages:
        headers = headers_of(message)
        assert headers["dlq_topic"] == service.settings.topic_results
        assert headers["dlq_error"] and headers["dlq_time"]
        assert int(headers["dlq_offset"]) >= 0
    errors = sorted(headers_of(message)["dlq_error"] for message in messages)
    assert any("breaks job.completed.v1" in error for error in errors)
    assert any("does not belong on the results topic" in error for error in errors)
    assert sum("not a CloudEvent" in error for error in errors) == 3
    schema_breaker = by_value[record.value]
    assert json.loads(schema_breaker.value())["job_id"] == job_id
    assert headers_of(schema_breaker)["ce_type"] == EventType.COMPLETED.value
    # The loop goes on: a good event after the poison is still folded.
    barrier(service, jobs_topic, executor)
