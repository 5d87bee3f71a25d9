"""Folding results on fakes: one write per job per batch, each event applied once."""

from __future__ import annotations

import asyncio
from typing import Any

from inference_common.events import EventType
from inference_service.domain.job import Job
from inference_service.domain.lifecycle import JobStatus
from inference_service.service_layer.folding import Outcome, positions, unanswered_starts
from tests.unit.service.builders import new_job, raw_record, record
from tests.unit.service.fakes import Wired, wire


def queued(wired: Wired) -> tuple[Job, dict[str, Any]]:
    job, _ = asyncio.run(wired.service.create(new_job()))
    request = wired.store.outbox_of(job.id)[-1]
    assert request.type is EventType.EXECUTION_REQUESTED
    data = request.cloudevent().get_data()
    assert isinstance(data, dict)
    return job, data


def test_started_and_completed_in_one_batch_are_one_write() -> None:
    wired = wire()
    job, request = queued(wired)
    writes = wired.store.writes
    started, completed = record(EventType.STARTED, request), record(EventType.COMPLETED, request)
    with wired.settled.watch(job.id) as watch:
        asyncio.run(wired.folding.fold([started, completed]))
        assert watch.job is not None and watch.job.status is JobStatus.DONE  # handed over
    assert wired.store.writes == writes + 1
    stored = wired.store.stored[job.id].job
    assert stored.status is JobStatus.DONE and stored.result is not None
    assert len(stored.applied_events) == 2
    # Redelivered: ignored, and nothing written.
    asyncio.run(wired.folding.fold([started, completed]))
    assert wired.store.writes == writes + 1
    assert wired.folding.counts[Outcome.APPLIED] == 2
    assert wired.folding.counts[Outcome.IGNORED] == 2


def test_a_retryable_failure_requests_the_next_attempt() -> None:
    wired = wire(max_attempts=2)
    job, request = queued(wired)
    error = {"code": "model_error", "message": "later", "retryable": True}
    asyncio.run(wired.folding.fold([record(EventType.FAILED, request, error=error)]))
    stored = wired.store.stored[job.id].job
    assert stored.status is JobStatus.QUEUED and stored.attempt == 2
    assert wired.store.outbox_of(job.id)[-1].type is EventType.EXECUTION_REQUESTED


def test_a_final_failure_fails_the_job() -> None:
    wired = wire()
    job, request = queued(wired)
    asyncio.run(wired.folding.fold([record(EventType.FAILED, request)]))
    stored = wired.store.stored[job.id].job
    assert stored.status is JobStatus.FAILED and stored.error is not None
    assert stored.error.code == "model_error"


def test_poison_goes_to_the_dead_letters_and_unknown_jobs_change_nothing() -> None:
    wired = wire()
    _job, request = queued(wired)
    unknown = {**request, "job_id": "f" * 32}
    asyncio.run(
        wired.folding.fold([raw_record(b"not an event"), record(EventType.STARTED, unknown)])
    )
    assert len(wired.dead_letters.sent) == 1
    assert wired.folding.counts[Outcome.DEAD_LETTERED] == 1
    assert wired.folding.counts[Outcome.IGNORED] == 1


def test_a_lone_started_is_held_and_the_offsets_stop_before_it() -> None:
    wired = wire()
    _a, request_a = queued(wired)
    _b, request_b = queued(wired)
    started_a = record(EventType.STARTED, request_a)
    started_b, completed_b = (
        record(EventType.STARTED, request_b),
        record(EventType.COMPLETED, request_b),
    )
    batch = [started_a, started_b, completed_b]
    assert unanswered_starts(batch) == [started_a]  # b's outcome is here already
    assert positions(batch, [started_a]) == {("results", 0): started_a.offset}
    assert positions(batch, []) == {("results", 0): completed_b.offset + 1}
