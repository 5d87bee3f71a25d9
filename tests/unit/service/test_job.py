"""The Job: each operation as the lifecycle table allows it, with the events it raises."""

from __future__ import annotations

from datetime import timedelta

import pytest

from inference_common.events import EventType
from inference_service.domain.job import Change, Job, JobError, JobResult, RetryPolicy, StoredImage
from inference_service.domain.lifecycle import IllegalTransition, JobStatus
from tests.unit.service.builders import AT, IMAGE, TRACE, creation

POLICY = RetryPolicy(max_attempts=2, deadline_seconds=60)


def created(image: StoredImage | None = IMAGE) -> Job:
    return creation(image=image).after


def queued() -> Job:
    return created().execute(AT, POLICY, TRACE).after


def types(change: Change) -> list[EventType]:
    return [event.type for event in change.events]


def result(job: Job, execution_id: str | None = None) -> JobResult:
    return JobResult(execution_id or job.execution_id or "", 1, "x", "m", {}, {}, AT)


def test_create_raises_created_and_execute_requests_an_execution() -> None:
    change = creation()
    assert change.before is None and change.entered is JobStatus.NEW
    assert types(change) == [EventType.CREATED]
    executed = change.then(change.after.execute(AT, POLICY, TRACE))
    job = executed.after
    assert job.status is JobStatus.QUEUED and job.attempt == 1
    assert job.execution_ids == (job.execution_id,)
    assert job.deadline == AT + timedelta(seconds=60)
    assert types(executed) == [EventType.CREATED, EventType.EXECUTION_REQUESTED]
    assert executed.entered is JobStatus.QUEUED  # one transition counted for both


def test_execute_needs_a_new_job_with_its_image() -> None:
    with pytest.raises(IllegalTransition, match="no image yet"):
        created(image=None).execute(AT, POLICY, TRACE)
    with pytest.raises(IllegalTransition, match="cannot execute a job that is QUEUED"):
        queued().execute(AT, POLICY, TRACE)


def test_the_image_changes_only_while_new() -> None:
    other = StoredImage("mem://y", "image/png", 1, 1, 1, "b" * 64)
    assert created().change_image(other, AT).after.image == other
    with pytest.raises(IllegalTransition, match="only change while the job is NEW"):
        queued().change_image(other, AT)


def test_a_started_then_completed_job_is_done_and_each_event_applies_once() -> None:
    job = queued()
    started = job.start("ev1", job.execution_id or "", AT)
    assert started is not None and started.after.status is JobStatus.RUNNING
    running = started.after
    assert running.start("ev1", running.execution_id or "", AT) is None  # redelivered
    completed = running.complete("ev2", result(running), AT)
    assert completed is not None
    both = started.then(completed)
    assert both.before is job and both.after.status is JobStatus.DONE
    assert both.after.applied_events == ("ev1", "ev2")
    assert both.after.deadline is None and both.events == ()
    assert both.after.complete("ev3", result(running), AT) is None  # DONE stays DONE


def test_a_completed_may_overtake_its_started_and_a_late_started_changes_nothing() -> None:
    job = queued()
    done = job.complete("ev2", result(job), AT)
    assert done is not None and done.after.status is JobStatus.DONE
    assert done.after.start("ev1", job.execution_id or "", AT) is None


def test_results_of_another_execution() -> None:
    job = queued()
    assert job.start("ev1", "someone-else", AT) is None
    assert job.complete("ev1", result(job, "someone-else"), AT) is None


def test_a_retryable_failure_is_retried_while_attempts_remain() -> None:
    job = queued()
    error = JobError("busy", "try again")
    retried = job.fail(
        "ev1", job.execution_id or "", error, retryable=True, attempt=1, policy=POLICY, at=AT
    )
    assert retried is not None and retried.after.status is JobStatus.QUEUED
    assert retried.after.attempt == 2 and types(retried) == [EventType.EXECUTION_REQUESTED]
    second = retried.after
    failed = second.fail(
        "ev2", second.execution_id or "", error, retryable=True, attempt=2, policy=POLICY, at=AT
    )
    assert failed is not None and failed.after.status is JobStatus.FAILED
    assert failed.after.error == error and failed.events == ()
    # The first attempt's answer still counts, even after it was given up on.
    assert second.complete("ev3", result(job), AT) is not None


def test_the_sweeper_retries_then_expires() -> None:
    job = queued()
    assert job.overdue(AT + timedelta(seconds=61)) and not job.overdue(AT)
    retried = job.retry(AT, POLICY)
    assert retried.after.attempt == 2 and types(retried) == [EventType.EXECUTION_REQUESTED]
    assert retried.after.deadline == AT + timedelta(seconds=120)  # twice the first's time
    expired = retried.after.expire(AT, POLICY)
    assert expired.after.status is JobStatus.FAILED
    assert expired.after.error is not None and expired.after.error.code == "deadline_exceeded"
    assert types(expired) == [EventType.FAILED]
    with pytest.raises(IllegalTransition):
        expired.after.retry(AT, POLICY)


def test_cancel_and_delete() -> None:
    cancelled = queued().cancel("enough", AT, TRACE)
    assert cancelled.after.status is JobStatus.CANCELLED and cancelled.after.deadline is None
    assert types(cancelled) == [EventType.CANCELLED]
    with pytest.raises(IllegalTransition, match="cannot cancel a job that is CANCELLED"):
        cancelled.after.cancel("again", AT, TRACE)
    deleted = queued().delete(AT, TRACE)
    assert deleted.after.deleted and deleted.after.status is JobStatus.CANCELLED
    assert types(deleted) == [EventType.CANCELLED, EventType.DELETED]
    assert types(created().delete(AT, TRACE)) == [EventType.DELETED]
    assert created().delete(AT, TRACE).after.status is JobStatus.NEW


def test_every_change_moves_the_version_and_names_what_it_changed() -> None:
    job = queued()
    cancelled = job.cancel("r", AT + timedelta(seconds=1), TRACE)
    assert cancelled.after.version == job.version + 1
    assert set(cancelled.fields) == {"status", "updated_at", "deadline", "version"}


def test_changes_folded_together_pass_each_status_on_the_way() -> None:
    job = queued()
    started = job.start("ev1", job.execution_id or "", AT)
    assert started is not None
    completed = started.after.complete("ev2", result(job), AT)
    assert completed is not None
    both = started.then(completed)
    assert both.entered is JobStatus.DONE
    assert both.statuses == (JobStatus.RUNNING, JobStatus.DONE)
