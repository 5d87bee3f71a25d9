"""The API's use cases on in-memory fakes: what they store, raise and hand to the relay."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

import pytest

from inference_common.events import EventType
from inference_common.tracecontext import Span
from inference_service.domain.job import JobFilter
from inference_service.domain.lifecycle import IllegalTransition, JobStatus
from inference_service.service_layer.jobs import (
    ExecuteNeedsImage,
    IdempotencyKeyReused,
    JobNotFound,
    NoResult,
)
from tests.unit.service.builders import jpeg, new_job
from tests.unit.service.fakes import wire

T = TypeVar("T")


def run(awaitable: Awaitable[T]) -> T:
    async def main() -> T:
        return await awaitable

    return asyncio.run(main())


def test_a_created_job_is_stored_with_its_image_and_events_in_one_write() -> None:
    wired = wire()
    job, created = run(wired.service.create(new_job(execute=True)))
    assert created and job.status is JobStatus.QUEUED
    assert wired.store.writes == 1  # no idempotency key: no key document either
    assert job.image is not None and wired.images.get(job.image.uri) == jpeg()
    events = [e.type for e in wired.store.outbox_of(job.id)]
    assert events == [EventType.CREATED, EventType.EXECUTION_REQUESTED]
    # Handed to the relay as written: it needs no read to publish them.
    [handed] = wired.writes.take(10)
    assert [e.type for e in handed.events] == events


def test_execute_needs_an_image() -> None:
    wired = wire()
    with pytest.raises(ExecuteNeedsImage):
        run(wired.service.create(new_job(execute=True, image=None)))


def test_execute_cancel_and_what_the_table_refuses() -> None:
    wired = wire()
    job, _ = run(wired.service.create(new_job(execute=False)))
    queued = run(wired.service.execute("alice", job.id, Span()))
    assert queued.status is JobStatus.QUEUED and queued.attempt == 1
    with pytest.raises(IllegalTransition):
        run(wired.service.execute("alice", job.id, Span()))
    cancelled = run(wired.service.cancel("alice", job.id, None, Span()))
    assert cancelled.status is JobStatus.CANCELLED
    with pytest.raises(IllegalTransition):
        run(wired.service.cancel("alice", job.id, "again", Span()))
    with pytest.raises(NoResult) as no_result:
        run(wired.service.result("alice", job.id))
    assert no_result.value.status is JobStatus.CANCELLED


def test_jobs_are_the_owners_alone() -> None:
    wired = wire()
    job, _ = run(wired.service.create(new_job()))
    with pytest.raises(JobNotFound):
        run(wired.service.get("bob", job.id))
    assert run(wired.service.page("bob", JobFilter(), None, 10)) == ([], None)


def test_the_image_changes_while_new_and_the_old_one_goes() -> None:
    wired = wire()
    job, _ = run(wired.service.create(new_job(execute=False)))
    assert job.image is not None
    changed = run(wired.service.put_image("alice", job.id, jpeg((4, 4))))
    assert changed.image is not None and changed.image.width == 4
    assert list(wired.images.images) == [changed.image.uri]
    run(wired.service.execute("alice", job.id, Span()))
    with pytest.raises(IllegalTransition):
        run(wired.service.put_image("alice", job.id, jpeg()))
    assert list(wired.images.images) == [changed.image.uri]  # the refused one is not kept


def test_delete_cancels_marks_and_removes_the_image_and_the_key() -> None:
    wired = wire()
    job, _ = run(wired.service.create(new_job(idempotency_key="k")))
    run(wired.service.delete("alice", job.id, Span()))
    with pytest.raises(JobNotFound):
        run(wired.service.get("alice", job.id))
    assert wired.images.images == {} and wired.store.keys == {}
    events = [e.type for e in wired.store.outbox_of(job.id)]
    assert events[-2:] == [EventType.CANCELLED, EventType.DELETED]


def test_an_idempotent_retry_answers_the_same_job_and_a_reused_key_is_refused() -> None:
    wired = wire()
    first, created = run(wired.service.create(new_job(idempotency_key="k")))
    again, created_again = run(wired.service.create(new_job(idempotency_key="k")))
    assert created and not created_again and again.id == first.id
    assert len(wired.store.stored) == 1
    with pytest.raises(IdempotencyKeyReused):
        run(wired.service.create(new_job(execute=False, idempotency_key="k")))


def test_pages_newest_first_with_a_cursor() -> None:
    wired = wire()
    ids = [run(wired.service.create(new_job(execute=False)))[0].id for _ in range(3)]
    first, cursor = run(wired.service.page("alice", JobFilter(), None, 2))
    assert cursor is not None and len(first) == 2
    rest, end = run(wired.service.page("alice", JobFilter(), cursor, 2))
    assert end is None
    assert sorted(job.id for job in first + rest) == sorted(ids)
