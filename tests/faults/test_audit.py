"""The audit's own checks, on made-up documents and topics: each kind of damage is caught."""

from __future__ import annotations

import uuid
from typing import Any

from inference_common.events import EventType
from tests.faults.audit import TopicEvent, TopicLog, audit

MODEL = "mobilenet-v2-imagenet-quant"


def event(
    kind: EventType, job_id: str, source: str = "/executor-service", **data: Any
) -> TopicEvent:
    return TopicEvent(str(uuid.uuid4()), kind, job_id, source, {"job_id": job_id, **data})


def completed(job_id: str, execution_id: str) -> TopicEvent:
    return event(EventType.COMPLETED, job_id, execution_id=execution_id, attempt=1)


def failed(job_id: str, execution_id: str, retryable: bool, attempt: int = 1) -> TopicEvent:
    error = {"code": "boom", "message": "it broke", "retryable": retryable}
    return event(EventType.FAILED, job_id, execution_id=execution_id, attempt=attempt, error=error)


class World:
    """One healthy DONE job, its events on both topics; tests then break one thing."""

    def __init__(self) -> None:
        self.job_id = uuid.uuid4().hex
        self.execution = uuid.uuid4().hex
        self.requests = TopicLog("jobs")
        self.results = TopicLog("results")
        self.requests.events += [
            event(EventType.CREATED, self.job_id, "/inference-service"),
            event(
                EventType.EXECUTION_REQUESTED,
                self.job_id,
                "/inference-service",
                execution_id=self.execution,
            ),
        ]
        self.done = completed(self.job_id, self.execution)
        self.results.events.append(self.done)
        self.job: dict[str, Any] = {
            "_id": self.job_id,
            "status": "DONE",
            "model": MODEL,
            "attempt": 1,
            "execution_id": self.execution,
            "execution_ids": [self.execution],
            "result": {"execution_id": self.execution, "model": MODEL},
            "error": None,
            "applied_events": [self.done.id],
            "outbox": [],
            "outbox_pending": False,
        }
        self.api = {self.job_id: "DONE"}

    def audit(self, client_ids: list[str] | None = None) -> Any:
        ids = [self.job_id] if client_ids is None else client_ids
        return audit([self.job], ids, self.requests, self.results, self.api, max_attempts=3)


def test_a_healthy_job_passes() -> None:
    report = World().audit()
    assert report.ok and report.problems() == []
    assert report.statuses == {"DONE": 1}


def test_redeliveries_and_second_runs_are_counted_not_blamed() -> None:
    world = World()
    world.requests.events.append(world.requests.events[1])  # the relay published it twice
    world.results.events.append(completed(world.job_id, world.execution))  # run again
    report = world.audit()
    assert report.ok
    assert report.redeliveries == {"jobs": 1, "results": 0}
    assert report.jobs_run_more_than_once == 1


def test_two_outcomes_applied_is_duplicated_in_effect() -> None:
    world = World()
    again = completed(world.job_id, world.execution)
    world.results.events.append(again)
    world.job["applied_events"].append(again.id)
    report = world.audit()
    assert list(report.duplicated_in_effect) == [world.job_id]
    assert "2 outcomes applied" in report.problems()[0]


def test_one_event_applied_twice_is_duplicated_in_effect() -> None:
    world = World()
    world.job["applied_events"].append(world.done.id)
    assert "applied 2 times" in world.audit().problems()[0]


def test_a_retried_failure_then_a_completion_is_one_outcome() -> None:
    world = World()
    retry = failed(world.job_id, world.execution, retryable=True)
    world.results.events.insert(0, retry)
    world.job["applied_events"].insert(0, retry.id)
    assert world.audit().ok


def test_stuck_jobs_and_missing_events_are_lost() -> None:
    world = World()
    world.job["status"] = "QUEUED"
    world.api[world.job_id] = "QUEUED"
    del world.requests.events[0]
    world.job["outbox_pending"] = True
    why = world.audit().lost[world.job_id]
    assert any("stuck in QUEUED" in line for line in why)
    assert any("no `created`" in line for line in why)
    assert any("outbox" in line for line in why)


def test_a_result_missing_from_the_topic_is_lost() -> None:
    world = World()
    world.results.events.clear()
    assert "not on the results topic" in world.audit().problems()[0]


def test_an_unrequested_execution_is_lost() -> None:
    world = World()
    world.job["execution_ids"].append("never-requested")
    assert "never requested" in world.audit().problems()[0]


def test_a_job_the_client_was_promised_but_not_stored_is_lost() -> None:
    report = World().audit(client_ids=["ghost"])
    assert "ghost" in report.lost


def test_the_api_disagreeing_with_the_database_is_lost() -> None:
    world = World()
    world.api[world.job_id] = "unreadable (HTTP 500)"
    assert "the API says" in world.audit().problems()[0]


def test_a_deadline_failure_needs_its_own_failed_event() -> None:
    world = World()
    world.job.update(
        status="FAILED",
        result=None,
        error={"code": "deadline_exceeded", "message": "late"},
        applied_events=[],
    )
    world.api[world.job_id] = "FAILED"
    world.results.events.clear()
    assert "its `failed` is not on the results topic" in world.audit().problems()[0]
    world.results.events.append(
        event(
            EventType.FAILED,
            world.job_id,
            "/inference-service",
            execution_id=world.execution,
            attempt=3,
            error={"code": "deadline_exceeded", "message": "late", "retryable": False},
        )
    )
    assert world.audit().ok
