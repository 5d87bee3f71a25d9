"""The batch use cases on in-memory fakes: one job per file, idempotent, counted, read."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Iterator
from typing import TypeVar

import pytest

from inference_common.tracecontext import Span
from inference_service.domain.images import ImageTooLarge
from inference_service.domain.lifecycle import JobStatus
from inference_service.service_layer.batches import (
    BatchNotFinished,
    BatchNotFound,
    NewBatch,
    UploadedFile,
)
from inference_service.service_layer.jobs import IdempotencyKeyReused
from tests.unit.service.builders import jpeg
from tests.unit.service.fakes import Wired, wire

T = TypeVar("T")
MODEL = "mobilenet-v2-imagenet-quant"


def run(awaitable: Awaitable[T]) -> T:
    async def main() -> T:
        return await awaitable

    return asyncio.run(main())


def uploads() -> Iterator[UploadedFile]:
    yield UploadedFile("a.jpg", jpeg())
    yield UploadedFile("broken.jpg", b"not an image")
    yield UploadedFile("b.jpg", jpeg((16, 12)))
    yield UploadedFile("huge.jpg", error=ImageTooLarge("too many bytes", "image-too-large"))


def request(key: str | None = "k1", model: str = MODEL) -> NewBatch:
    return NewBatch(owner="alice", model=model, options={}, idempotency_key=key)


async def collected(lines: AsyncIterator[T]) -> list[T]:
    return [line async for line in lines]


def jobs_of(wired: Wired) -> int:
    return len(wired.store.stored)


def test_each_good_file_becomes_a_queued_job_and_each_bad_one_a_problem() -> None:
    wired = wire()
    progress, created = run(wired.batches.create(request(), uploads()))
    assert created and progress.total == 4 and not progress.finished
    assert progress.counts["QUEUED"] == 2 and progress.counts["REJECTED"] == 2
    assert progress.share == 0.5  # rejected files are finished files
    files = progress.batch.files
    assert [f.name for f in files] == ["a.jpg", "broken.jpg", "b.jpg", "huge.jpg"]
    assert files[1].problem is not None and files[1].problem.status == 415
    assert files[3].problem is not None and files[3].problem.status == 413
    assert files[3].problem.slug == "image-too-large"
    assert jobs_of(wired) == 2


def test_a_retried_upload_creates_nothing_twice() -> None:
    wired = wire()
    first, _ = run(wired.batches.create(request(), uploads()))
    again, created = run(wired.batches.create(request(), uploads()))
    assert not created and again.batch.id == first.batch.id
    assert jobs_of(wired) == 2
    # Cut short before the batch was written: the jobs are found by their derived keys.
    del wired.batch_store.stored[first.batch.id]
    rebuilt, created = run(wired.batches.create(request(), uploads()))
    assert created and rebuilt.batch.job_ids == first.batch.job_ids
    assert jobs_of(wired) == 2
    # Without a key nothing ties two uploads together.
    run(wired.batches.create(request(key=None), uploads()))
    assert jobs_of(wired) == 4


def test_the_same_key_with_another_model_is_refused() -> None:
    wired = wire()
    run(wired.batches.create(request(), uploads()))
    with pytest.raises(IdempotencyKeyReused):
        run(wired.batches.create(request(model="ssd-mobilenet-v1-coco-quant"), uploads()))


def test_results_wait_for_the_batch_and_finished_jobs_are_not_read_again() -> None:
    wired = wire()
    progress, _ = run(wired.batches.create(request(), uploads()))
    with pytest.raises(BatchNotFinished):
        run(wired.batches.results("alice", progress.batch.id))
    cancelled = run(wired.batches.cancel("alice", progress.batch.id, None, Span()))
    assert cancelled.finished and cancelled.counts["CANCELLED"] == 2
    reads = wired.store.reads
    again = run(wired.batches.get("alice", progress.batch.id))
    assert again.finished and wired.store.reads == reads  # the batch knows they are final
    _batch, lines = run(wired.batches.results("alice", progress.batch.id))
    found = run(collected(lines))
    assert [(f.name, j.status if j else None) for f, j in found] == [
        ("a.jpg", JobStatus.CANCELLED),
        ("broken.jpg", None),
        ("b.jpg", JobStatus.CANCELLED),
        ("huge.jpg", None),
    ]


def test_delete_removes_every_job_and_the_batch() -> None:
    wired = wire()
    progress, _ = run(wired.batches.create(request(), uploads()))
    run(wired.batches.delete("alice", progress.batch.id, Span()))
    assert all(stored.job.deleted for stored in wired.store.stored.values())
    with pytest.raises(BatchNotFound):
        run(wired.batches.get("alice", progress.batch.id))
    # The keys were released with the jobs: the same upload makes a new batch.
    _again, created = run(wired.batches.create(request(), uploads()))
    assert created and jobs_of(wired) == 4


def test_another_client_does_not_see_the_batch() -> None:
    wired = wire()
    progress, _ = run(wired.batches.create(request(), uploads()))
    with pytest.raises(BatchNotFound):
        run(wired.batches.get("bob", progress.batch.id))
