"""The deadline sweeper on fakes: a new attempt while attempts remain, then FAILED."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta

from inference_common.events import EventType
from inference_service.domain.clock import now
from inference_service.domain.lifecycle import JobStatus
from tests.unit.service.builders import new_job
from tests.unit.service.fakes import Wired, wire


def overdue(wired: Wired, job_id: str) -> None:
    stored = wired.store.stored[job_id]
    stored.job = dataclasses.replace(stored.job, deadline=now() - timedelta(seconds=1))


def test_retried_then_failed_with_deadline_exceeded() -> None:
    wired = wire(max_attempts=2)
    job, _ = asyncio.run(wired.service.create(new_job()))
    assert asyncio.run(wired.sweeping.sweep_once()) == 0  # not due yet
    overdue(wired, job.id)
    assert asyncio.run(wired.sweeping.sweep_once()) == 1
    retried = wired.store.stored[job.id].job
    assert retried.status is JobStatus.QUEUED and retried.attempt == 2
    overdue(wired, job.id)
    assert asyncio.run(wired.sweeping.sweep_once()) == 1
    failed = wired.store.stored[job.id].job
    assert failed.status is JobStatus.FAILED and failed.error is not None
    assert failed.error.code == "deadline_exceeded"
    assert wired.store.outbox_of(job.id)[-1].type is EventType.FAILED
    assert asyncio.run(wired.sweeping.sweep_once()) == 0
