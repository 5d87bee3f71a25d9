"""Deadlines: a job nobody answers is tried again, then failed, even across restarts."""

from __future__ import annotations

import pytest

from inference_common.events import EventType
from inference_common.kafka import ensure_topics
from tests.contracts import validate_kafka_event
from tests.integration.service.harness import (
    Executor,
    TopicReader,
    assert_problem,
    free_port,
    headers_of,
    new_job,
    requests_for,
    service_settings,
    start_service,
    wait_status,
)

pytestmark = pytest.mark.integration


def test_retry_then_fail_after_the_last_deadline(isolated_env: dict[str, str]) -> None:
    settings = service_settings(execution_deadline_seconds=3.0, max_attempts=2)
    ensure_topics(settings)
    service = start_service(settings)
    jobs_topic = TopicReader(settings, settings.topic_jobs)
    results = TopicReader(settings, settings.topic_results)
    try:
        job = new_job(service.client, execute=True)
        first, second = requests_for(jobs_topic, job["id"], 2)
        assert (first["attempt"], second["attempt"]) == (1, 2)
        assert first["execution_id"] != second["execution_id"]
        assert second["deadline"] > first["deadline"]
        # The executor starts attempt 2, then goes silent.
        Executor(settings).started(second)
        wait_status(service.client, job["id"], "RUNNING")
        failed = wait_status(service.client, job["id"], "FAILED", timeout=20)
        assert failed["error"]["code"] == "deadline_exceeded" and failed["attempt"] == 2
        problem = assert_problem(service.client.get(f"/jobs/{job['id']}/result"), 409, "job-failed")
        assert problem["error"]["code"] == "deadline_exceeded"

        announced = [
            m for m in results.read(2, settle=0.5)
            if headers_of(m)["ce_type"] == EventType.FAILED.value
        ]  # fmt: skip
        (event,) = announced
        data = validate_kafka_event(event.headers(), event.value())
        assert headers_of(event)["ce_source"] == "/inference-service"
        assert data["failed_by"] == "inference-service"
        assert data["execution_id"] == second["execution_id"] and data["attempt"] == 2
    finally:
        jobs_topic.close()
        results.close()
        service.stop()


def test_the_deadline_lives_in_mongo_and_survives_a_restart(isolated_env: dict[str, str]) -> None:
    settings = service_settings(execution_deadline_seconds=1.5, max_attempts=1, run_sweeper=False)
    ensure_topics(settings)
    first = start_service(settings)
    try:
        job = new_job(first.client, execute=True)
    finally:
        first.stop()
    restarted = start_service(service_settings(service_port=free_port(), max_attempts=1))
    try:
        failed = wait_status(restarted.client, job["id"], "FAILED", timeout=20)
        assert failed["error"]["code"] == "deadline_exceeded"
    finally:
        restarted.stop()
