"""Retention: what a finished job keeps, for how long, and the sweep that removes the rest."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from inference_common.contracts import EventSchemas
from inference_common.events import EventType
from inference_common.image_store import ImageMissing
from inference_common.tracecontext import Span
from inference_service.api.views import result_line
from inference_service.domain.batch import BatchFile
from inference_service.domain.events import OutboxEvent
from inference_service.domain.job import Job, JobResult, RetentionPolicy
from inference_service.domain.lifecycle import JobStatus
from inference_service.service_layer.jobs import JobNotFound, Purged
from tests.unit.service.builders import AT, TRACE, jpeg, new_job, record
from tests.unit.service.fakes import AT_ONCE, RETENTION, Wired, wire
from tests.unit.service.test_job import POLICY, created, queued

SCHEMAS = EventSchemas(Path(__file__).resolve().parents[3] / "openapi" / "asyncapi.yaml")
HOUR = timedelta(hours=1)


def done(keep_image: bool = False) -> Job:
    job = dataclasses.replace(queued(), keep_image=keep_image)
    result = JobResult(job.execution_id or "", 1, "x", "m", {"task": "t"}, {}, AT)
    change = job.complete("ev1", result, AT)
    assert change is not None
    return change.after


def purged_data(job: Job, at: datetime) -> dict[str, Any]:
    change = job.purge(at, RETENTION)
    assert change is not None
    (event,) = change.events
    assert event.type is EventType.PURGED
    data = event.cloudevent().get_data()
    assert isinstance(data, dict) and SCHEMAS.problems(EventType.PURGED, data) == []
    return data


def removed(event: OutboxEvent) -> object:
    data = event.cloudevent().get_data()
    assert isinstance(data, dict)
    return data["removed"]


# --- the Job ---


def test_a_finished_job_loses_its_image_first_then_its_result() -> None:
    job = done()
    soon = AT + timedelta(seconds=1)
    assert job.due_for_purge(AT, RETENTION) == ()  # finished at AT: not before AT
    assert purged_data(job, soon)["removed"] == ["image"]
    change = job.purge(soon, RETENTION)
    assert change is not None
    without_image = change.after
    assert without_image.image_deleted_at == soon and without_image.result is not None
    assert without_image.image == job.image  # what it was stays known: only the bytes go
    assert without_image.status is JobStatus.DONE and without_image.updated_at == AT
    assert without_image.version == job.version + 1
    assert without_image.due_for_purge(soon + HOUR / 2, RETENTION) == ()
    later = AT + HOUR + timedelta(seconds=1)
    assert purged_data(without_image, later)["removed"] == ["result"]
    change = without_image.purge(later, RETENTION)
    assert change is not None
    purged = change.after
    assert purged.result is None and purged.purged_at == later
    assert purged.status is JobStatus.DONE and purged.error is None
    assert purged.purge(later + HOUR, RETENTION) is None  # nothing left to remove


def test_a_job_that_keeps_its_image_keeps_it_as_long_as_its_result() -> None:
    job = done(keep_image=True)
    assert job.purge(AT + HOUR / 2, RETENTION) is None
    assert purged_data(job, AT + 2 * HOUR)["removed"] == ["image", "result"]


def test_images_kept_for_a_period_by_the_setting() -> None:
    policy = RetentionPolicy(image_seconds=600, result_seconds=3600)
    job = done()
    assert job.due_for_purge(AT + timedelta(seconds=599), policy) == ()
    assert job.due_for_purge(AT + timedelta(seconds=601), policy) == ("image",)


def test_only_finished_jobs_are_purged() -> None:
    far = AT + timedelta(days=365)
    assert created().purge(far, RETENTION) is None  # NEW: may still execute
    assert queued().purge(far, RETENTION) is None  # an executor needs its image
    failed = queued().expire(AT, POLICY).after
    assert failed.due_for_purge(far, RETENTION) == ("image",)  # no result to purge
    deleted = done().delete(AT, TRACE).after
    assert deleted.result is None  # a delete drops the result at once
    assert deleted.purge(far, RETENTION) is None  # the delete removes the rest


def test_a_batch_line_of_a_purged_result_says_it_is_gone() -> None:
    later = AT + 2 * HOUR
    change = done().purge(later, RETENTION)
    assert change is not None
    line = result_line(BatchFile(0, "cat.jpg", change.after.id), change.after)
    assert line["status"] == "DONE" and "result" not in line
    assert line["problem"]["status"] == 410
    assert line["problem"]["type"] == "urn:cvinference:problem:purged"


# --- the sweep, on fakes ---


def finished(wired: Wired, image: bytes, **fields: Any) -> Job:
    job, _ = asyncio.run(wired.service.create(new_job(image=image, **fields)))
    request = wired.store.outbox_of(job.id)[-1].cloudevent().get_data()
    assert isinstance(request, dict)
    asyncio.run(wired.folding.fold([record(EventType.COMPLETED, request)]))
    stored = wired.store.stored[job.id].job
    assert stored.status is JobStatus.DONE
    return stored


def sweep(wired: Wired, after: timedelta = timedelta(seconds=1)) -> int:
    latest = max(s.job.updated_at for s in wired.store.stored.values())
    return asyncio.run(wired.purging.sweep_once(latest + after))


def test_the_sweep_removes_the_bytes_then_answers_gone_and_announces_it() -> None:
    wired = wire()
    job = finished(wired, jpeg())
    assert job.image is not None
    assert sweep(wired) == 1
    with pytest.raises(ImageMissing):
        wired.images.get(job.image.uri)
    with pytest.raises(Purged, match="image was removed") as gone:
        asyncio.run(wired.service.image("alice", job.id))
    assert gone.value.status is JobStatus.DONE
    assert asyncio.run(wired.service.result("alice", job.id)).result is not None
    assert sweep(wired) == 0  # nothing more is due yet

    assert sweep(wired, HOUR + timedelta(seconds=2)) == 1
    with pytest.raises(Purged, match="result was removed"):
        asyncio.run(wired.service.result("alice", job.id))
    kept = asyncio.run(wired.service.get("alice", job.id))
    assert kept.status is JobStatus.DONE and kept.purged_at is not None

    asyncio.run(wired.relaying.drain_once())
    purges = [e for e in wired.publisher.published if e.type is EventType.PURGED]
    assert [removed(event) for event in purges] == [["image"], ["result"]]


def test_by_default_the_fold_removes_a_done_jobs_image_with_no_later_write() -> None:
    wired = wire(retention=AT_ONCE)
    job = finished(wired, jpeg())
    assert job.image is not None and job.image_deleted_at is not None
    with pytest.raises(ImageMissing):
        wired.images.get(job.image.uri)
    with pytest.raises(Purged, match="image was removed"):
        asyncio.run(wired.service.image("alice", job.id))
    assert asyncio.run(wired.service.result("alice", job.id)).result is not None
    writes = wired.store.writes
    assert sweep(wired) == 0 and wired.store.writes == writes  # nothing left for the sweep
    assert not [e for e in wired.store.outbox_of(job.id) if e.type is EventType.PURGED]


def test_the_fold_leaves_a_kept_image_and_one_it_cannot_remove_to_the_sweep() -> None:
    wired = wire(retention=AT_ONCE)
    kept = finished(wired, jpeg(), keep_image=True)
    assert kept.image is not None and kept.image_deleted_at is None
    assert wired.images.get(kept.image.uri)
    job, _ = asyncio.run(wired.service.create(new_job(image=jpeg((9, 9)))))
    assert job.image is not None
    wired.images.unavailable.add(job.image.uri)
    request = wired.store.outbox_of(job.id)[-1].cloudevent().get_data()
    assert isinstance(request, dict)
    asyncio.run(wired.folding.fold([record(EventType.COMPLETED, request)]))
    stuck = wired.store.stored[job.id].job
    assert stuck.status is JobStatus.DONE and stuck.image_deleted_at is None
    wired.images.unavailable.clear()
    assert sweep(wired) == 1  # the sweep removes it, and announces it
    assert stuck.image is not None
    with pytest.raises(ImageMissing):
        wired.images.get(stuck.image.uri)


def test_bytes_another_live_job_shares_are_never_removed() -> None:
    wired = wire()
    same = jpeg()
    live, _ = asyncio.run(wired.service.create(new_job(image=same)))  # QUEUED: an executor reads it
    done_job = finished(wired, same)
    assert live.image is not None and done_job.image is not None
    assert live.image.sha256 == done_job.image.sha256
    assert sweep(wired, timedelta(days=30)) == 1  # only the finished one, however late
    with pytest.raises(ImageMissing):
        wired.images.get(done_job.image.uri)
    assert wired.images.get(live.image.uri) == same
    data, _ = asyncio.run(wired.service.image("alice", live.id))
    assert data == same


def test_a_job_that_keeps_its_image_is_left_alone_until_its_result_goes() -> None:
    wired = wire()
    job = finished(wired, jpeg(), keep_image=True)
    assert job.keep_image and job.image is not None
    assert sweep(wired) == 0
    assert wired.images.get(job.image.uri)
    assert sweep(wired, HOUR + timedelta(seconds=1)) == 1
    with pytest.raises(ImageMissing):
        wired.images.get(job.image.uri)


def test_each_sweep_handles_one_bounded_batch() -> None:
    wired = wire()  # batches of 10
    for size in range(8, 23):
        finished(wired, jpeg((size, size)))
    assert (sweep(wired), sweep(wired), sweep(wired)) == (10, 5, 0)


def test_an_image_the_store_cannot_remove_now_is_tried_again_and_holds_up_no_other() -> None:
    wired = wire()
    stuck = finished(wired, jpeg((9, 9)))
    other = finished(wired, jpeg())
    assert stuck.image is not None and other.image is not None
    wired.images.unavailable.add(stuck.image.uri)
    assert sweep(wired) == 1
    assert wired.store.stored[stuck.id].job.image_deleted_at is None  # it still names its image
    with pytest.raises(ImageMissing):
        wired.images.get(other.image.uri)
    wired.images.unavailable.clear()
    assert sweep(wired) == 1
    with pytest.raises(ImageMissing):
        wired.images.get(stuck.image.uri)


def test_delete_removes_the_bytes_and_the_result_at_once() -> None:
    wired = wire()
    same = jpeg()
    other = finished(wired, same)
    job = finished(wired, same)
    assert job.image is not None and other.image is not None
    asyncio.run(wired.service.delete("alice", job.id, Span()))
    with pytest.raises(ImageMissing):
        wired.images.get(job.image.uri)
    assert wired.store.stored[job.id].job.result is None  # before the record itself goes
    assert wired.images.get(other.image.uri) == same  # the same bytes, another job's copy
    asyncio.run(wired.relaying.drain_once())
    assert job.id not in wired.store.stored
    with pytest.raises(JobNotFound):
        asyncio.run(wired.service.result("alice", job.id))
