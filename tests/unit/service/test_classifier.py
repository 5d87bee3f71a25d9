"""The synchronous classifier's wait, its problems, and the 404 body limit of /mnist/classify."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from inference_common.events import EventType
from inference_service.api.limits import BodyLimitMiddleware
from inference_service.api.problems import Problem, describe
from inference_service.domain.job import Job, JobError
from inference_service.domain.lifecycle import JobStatus
from inference_service.service_layer.waiting import ClassificationFailed, ClassificationTimedOut
from tests.unit.service.builders import discard, new_job, no_body, record
from tests.unit.service.fakes import Wired, wire

JOB = "0123456789abcdef0123456789abcdef"


async def executed(wired: Wired, *types: EventType) -> None:
    """Plays the executor for the one job there is, once it is QUEUED."""
    while not wired.store.stored:
        await asyncio.sleep(0.01)
    [job_id] = wired.store.stored
    data = wired.store.outbox_of(job_id)[-1].cloudevent().get_data()
    assert isinstance(data, dict)
    await wired.folding.fold([record(kind, data) for kind in types])


def test_a_fold_hands_the_job_to_the_waiter_without_a_read() -> None:
    async def scenario() -> tuple[Job, float, int]:
        wired = wire(timeout=5.0, poll=5.0)
        waiting = asyncio.create_task(wired.classifier.classify(new_job()))
        await executed(wired, EventType.STARTED, EventType.COMPLETED)
        reads = wired.store.reads
        started = time.monotonic()
        job = await waiting
        return job, time.monotonic() - started, wired.store.reads - reads

    job, waited, reads = asyncio.run(scenario())
    assert job.status is JobStatus.DONE and waited < 1.0 and reads == 0


def test_a_job_settled_before_the_wait_began_is_not_waited_for() -> None:
    async def scenario() -> float:
        wired = wire(timeout=5.0, poll=5.0)
        job, _ = await wired.service.create(new_job())
        await executed(wired, EventType.COMPLETED)
        started = time.monotonic()
        await wired.classifier.settle("alice", job)  # `job` is the QUEUED one it was given
        return time.monotonic() - started

    assert asyncio.run(scenario()) < 1.0


def test_without_notifications_the_waiter_polls() -> None:
    async def scenario() -> Job:
        wired = wire(timeout=5.0, poll=0.05)
        job, _ = await wired.service.create(new_job())
        stored = wired.store.stored[job.id]
        # Finished elsewhere (another replica): only the store knows.
        stored.job = dataclasses.replace(stored.job, status=JobStatus.CANCELLED)
        return await wired.classifier.wait("alice", job, 5.0)

    assert asyncio.run(scenario()).status is JobStatus.CANCELLED


def test_a_job_that_does_not_settle_in_time_times_out_with_its_id() -> None:
    wired = wire(timeout=0.2, poll=0.05)
    with pytest.raises(ClassificationTimedOut) as caught:
        asyncio.run(wired.classifier.classify(new_job()))
    [job_id] = wired.store.stored
    assert caught.value.job_id == job_id
    assert wired.settled._watches == {}  # the watch is gone with the request


def test_a_failed_job_raises_with_its_error() -> None:
    async def scenario() -> None:
        wired = wire(timeout=5.0, poll=5.0)
        waiting = asyncio.create_task(wired.classifier.classify(new_job()))
        await executed(wired, EventType.FAILED)
        await waiting

    with pytest.raises(ClassificationFailed) as caught:
        asyncio.run(scenario())
    assert caught.value.error == JobError("model_error", "it broke")


def failed_job(status: JobStatus, error: JobError | None) -> Job:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    return Job(JOB, "a", "n", "m", "t", {}, status, at, at, "", "", error=error)


def test_classify_problems_carry_the_job_id() -> None:
    timed_out = describe(ClassificationTimedOut(JOB, 10))
    assert timed_out is not None
    assert (timed_out.status, timed_out.slug) == (504, "classify-timeout")
    assert timed_out.extensions == {"job_id": JOB}
    failed = describe(ClassificationFailed(failed_job(JobStatus.FAILED, JobError("c", "m"))))
    assert failed is not None
    assert (failed.status, failed.slug) == (502, "job-failed")
    assert failed.extensions == {
        "job_id": JOB,
        "job_status": "FAILED",
        "error": {"code": "c", "message": "m"},
    }
    cancelled = describe(ClassificationFailed(failed_job(JobStatus.CANCELLED, None)))
    assert cancelled is not None and cancelled.status == 409


def test_a_too_large_body_is_404_on_the_paths_that_say_so() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("not reached")

    limit = BodyLimitMiddleware(app, 10, status_by_path={"/mnist/classify": 404})

    def status(path: str) -> int:
        scope = {"type": "http", "path": path, "headers": [(b"content-length", b"11")]}
        with pytest.raises(Problem) as caught:
            asyncio.run(limit(scope, no_body, discard))
        return int(caught.value.status)

    assert status("/mnist/classify") == 404
    assert status("/jobs") == 413
