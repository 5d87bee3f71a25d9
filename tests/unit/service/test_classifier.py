"""The synchronous classifier's wait, its problems, and the 404 body limit of /mnist/classify."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from inference_service.api.limits import BodyLimitMiddleware
from inference_service.api.problems import Problem, describe
from inference_service.classifier import (
    ClassificationFailed,
    ClassificationTimedOut,
    Classifier,
    WaitPolicy,
)
from inference_service.service import JobService, NewJob
from inference_service.workers.settled import SettledJobs

JOB = "0123456789abcdef0123456789abcdef"


class FakeJobs:
    """Stands in for JobService: `create` answers QUEUED; `status` is what `get` reads."""

    def __init__(self) -> None:
        self.status = "QUEUED"
        self.reads = 0
        self.error: dict[str, str] | None = None

    def job(self) -> dict[str, Any]:
        result = {"result": {"classes": []}} if self.status == "DONE" else None
        return {"_id": JOB, "status": self.status, "result": result, "error": self.error}

    async def create(self, request: NewJob) -> tuple[dict[str, Any], bool]:
        return self.job(), True

    async def get(self, owner: str, job_id: str) -> dict[str, Any]:
        self.reads += 1
        return self.job()


def classifier(jobs: FakeJobs, settled: SettledJobs, timeout: float, poll: float) -> Classifier:
    service: JobService = jobs  # type: ignore[assignment]
    return Classifier(service, settled, WaitPolicy(timeout, poll))


def request() -> NewJob:
    return NewJob("anonymous", "classify", "m", {}, b"x", execute=True)


def test_a_notification_wakes_the_waiter_before_its_poll() -> None:
    async def scenario() -> float:
        jobs, settled = FakeJobs(), SettledJobs()
        waiting = asyncio.create_task(classifier(jobs, settled, 5.0, 5.0).classify(request()))
        await asyncio.sleep(0.05)
        jobs.status = "DONE"
        started = time.monotonic()
        settled.notify(JOB)
        job = await waiting
        assert job["status"] == "DONE"
        return time.monotonic() - started

    assert asyncio.run(scenario()) < 1.0


def test_without_notifications_the_waiter_polls() -> None:
    async def scenario() -> int:
        jobs = FakeJobs()
        loop = asyncio.get_running_loop()
        loop.call_later(0.2, setattr, jobs, "status", "DONE")
        await classifier(jobs, SettledJobs(), 5.0, 0.05).classify(request())
        return jobs.reads

    assert asyncio.run(scenario()) >= 2


def test_a_job_that_does_not_settle_in_time_times_out_with_its_id() -> None:
    settled = SettledJobs()
    with pytest.raises(ClassificationTimedOut) as caught:
        asyncio.run(classifier(FakeJobs(), settled, 0.2, 0.05).classify(request()))
    assert caught.value.job_id == JOB
    assert settled._waiters == {}  # the watch is gone with the request


def test_a_failed_job_raises_with_its_error() -> None:
    jobs = FakeJobs()
    jobs.status, jobs.error = "FAILED", {"code": "model_error", "message": "it broke"}
    with pytest.raises(ClassificationFailed) as caught:
        asyncio.run(classifier(jobs, SettledJobs(), 1.0, 0.05).classify(request()))
    assert caught.value.error == jobs.error


def test_classify_problems_carry_the_job_id() -> None:
    timed_out = describe(ClassificationTimedOut(JOB, 10))
    assert timed_out is not None
    assert (timed_out.status, timed_out.slug) == (504, "classify-timeout")
    assert timed_out.extensions == {"job_id": JOB}
    failed = describe(
        ClassificationFailed(
            {"_id": JOB, "status": "FAILED", "error": {"code": "c", "message": "m"}}
        )
    )
    assert failed is not None
    assert (failed.status, failed.slug) == (502, "job-failed")
    assert failed.extensions == {
        "job_id": JOB,
        "job_status": "FAILED",
        "error": {"code": "c", "message": "m"},
    }
    cancelled = describe(ClassificationFailed({"_id": JOB, "status": "CANCELLED"}))
    assert cancelled is not None and cancelled.status == 409


def test_a_too_large_body_is_404_on_the_paths_that_say_so() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("not reached")

    limit = BodyLimitMiddleware(app, 10, status_by_path={"/mnist/classify": 404})

    def status(path: str) -> int:
        scope = {"type": "http", "path": path, "headers": [(b"content-length", b"11")]}
        with pytest.raises(Problem) as caught:
            asyncio.run(limit(scope, None, None))  # type: ignore[arg-type]
        return int(caught.value.status)

    assert status("/mnist/classify") == 404
    assert status("/jobs") == 413
