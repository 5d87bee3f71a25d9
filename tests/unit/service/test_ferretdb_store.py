"""FerretDB's wrapper: the open jobs it keeps in process survive a write that the database
stored but never answered (found by the fault-injection suite: a job inserted as FerretDB was
killed stayed QUEUED with its events in the outbox, seen by neither the relay nor the sweeper),
and its conditions are checked here, on the document as this process last wrote it."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from inference_service.adapters.documents import Document, Documents
from inference_service.adapters.ferretdb_jobs import CheckedDocuments, FerretDbJobStore, OpenJobs
from inference_service.domain.job import (
    Change,
    JobResult,
    RetentionPolicy,
    RetryPolicy,
)
from inference_service.ports import Outbox, StoreUnavailable
from tests.unit.service.builders import queued_creation

NOW = datetime(2026, 1, 1, tzinfo=UTC)
POLICY = RetryPolicy(3, 60)


class DyingDocuments:
    """Applies `$set` by `_id` alone; after `die()` a write lands but raises, as a killed
    server's reply would; while `replies` is clear a write lands and its reply waits, as on
    a loaded machine. Counts the reads."""

    def __init__(self) -> None:
        self.documents: dict[str, Document] = {}
        self.dying = False
        self.reads = 0
        self.replies = asyncio.Event()
        self.replies.set()

    async def find_one(
        self, doc_id: str, projection: Mapping[str, int] | None = None
    ) -> Document | None:
        self.reads += 1
        found = self.documents.get(doc_id)
        return dict(found) if found is not None else None

    async def find(
        self,
        query: Mapping[str, Any],
        projection: Mapping[str, int] | None = None,
        *,
        sort: Sequence[tuple[str, int]] = (),
        limit: int = 0,
    ) -> list[Document]:
        return []  # the start-up scan: nothing stored yet

    async def insert(self, document: Document) -> bool:
        self.documents[document["_id"]] = dict(document)
        self._answer()
        return True

    async def update(self, query: Mapping[str, Any], update: Mapping[str, Any]) -> Document | None:
        assert set(query) == {"_id"}, "FerretDB's writes go by `_id` alone"
        document = self.documents[query["_id"]]
        document.update(update.get("$set", {}))
        for name, each in update.get("$push", {}).items():
            document[name] = document.get(name, []) + each["$each"]
        await self.replies.wait()
        self._answer()
        return dict(document)

    async def delete(self, query: Mapping[str, Any]) -> Document | None:
        return self.documents.pop(query["_id"], None)

    def _answer(self) -> None:
        if self.dying:
            raise StoreUnavailable("127.0.0.1:27017: connection closed")


def store() -> tuple[FerretDbJobStore, DyingDocuments]:
    collection = DyingDocuments()
    inner: Documents = collection
    keys: Documents = DyingDocuments()
    return FerretDbJobStore(CheckedDocuments(inner, OpenJobs()), CheckedDocuments(keys)), collection


def queued(job_id: str) -> Change:
    return queued_creation(job_id, at=NOW, policy=POLICY)


def test_a_job_stored_by_an_unanswered_insert_is_still_published_and_swept() -> None:
    async def scenario() -> None:
        jobs, collection = store()
        assert await jobs.pending_outboxes(10) == []  # the start-up scan is done
        collection.dying = True
        with pytest.raises(StoreUnavailable):
            await jobs.add(queued("j1"))
        collection.dying = False

        assert [o.job_id for o in await jobs.pending_outboxes(10)] == ["j1"]
        overdue = await jobs.overdue(NOW + timedelta(seconds=61), 10)
        assert [job.id for job in overdue] == ["j1"]

    asyncio.run(scenario())


def test_an_unanswered_insert_that_stored_nothing_leaves_nothing_behind() -> None:
    async def scenario() -> None:
        jobs, collection = store()
        await jobs.pending_outboxes(10)
        collection.dying = True
        with pytest.raises(StoreUnavailable):
            await jobs.add(queued("j2"))
        del collection.documents["j2"]  # this time it was lost on the way

        assert await jobs.pending_outboxes(10) == []
        assert await jobs.overdue(NOW + timedelta(seconds=61), 10) == []

    asyncio.run(scenario())


def test_conditions_are_checked_on_the_document_it_wrote_without_reading_it() -> None:
    async def scenario() -> None:
        jobs, collection = store()
        change = queued("j3")
        await jobs.add(change)
        stale = change.after.cancel("first", NOW, "")
        assert await jobs.save(stale) is not None
        assert await jobs.save(change.after.cancel("second", NOW, "")) is None  # lost the race
        pending = await jobs.pending_outboxes(10)
        assert [len(o.events) for o in pending] == [3]
        await jobs.remove_delivered("j3", pending[0].events)
        assert await jobs.get("j3") == stale.after
        assert collection.reads == 0  # all of it from what this process wrote
        assert collection.documents["j3"]["outbox"] == []

    asyncio.run(scenario())


def test_finished_jobs_holding_content_are_found_for_retention_without_a_scan() -> None:
    async def scenario() -> None:
        jobs, collection = store()
        retention = RetentionPolicy(image_seconds=0, result_seconds=3600)
        change = queued("j4")
        await jobs.add(change)
        await jobs.add(queued("j5"))  # still QUEUED: never retention's
        job = change.after
        result = JobResult(job.execution_id or "", 1, "x", "m", {"task": "t"}, {}, NOW)
        completed = job.complete("ev1", result, NOW)
        assert completed is not None and await jobs.save(completed) is not None
        later = NOW + timedelta(seconds=1)
        assert [j.id for j in await jobs.purgeable(later, retention, 10)] == ["j4"]
        purge = completed.after.purge(later, retention)  # the image goes, the result stays
        assert purge is not None and await jobs.save(purge) is not None
        assert await jobs.purgeable(later, retention, 10) == []
        due = NOW + timedelta(hours=2)
        assert [j.id for j in await jobs.purgeable(due, retention, 10)] == ["j4"]
        assert collection.reads == 0  # answered from what this process wrote

    asyncio.run(scenario())


async def cancel_stored_unanswered(
    jobs: FerretDbJobStore, collection: DyingDocuments, job_id: str
) -> asyncio.Task[Outbox | None]:
    """A job cancelled by a write that the database stored and has not answered yet."""
    change = queued(job_id)
    await jobs.add(change)
    collection.replies.clear()
    writing = asyncio.create_task(jobs.save(change.after.cancel("c", NOW, "")))
    while collection.documents[job_id]["status"] != "CANCELLED":
        await asyncio.sleep(0)
    return writing


def test_a_read_during_a_write_that_landed_waits_for_its_reply() -> None:
    """Seen under load: the folder's DONE was in the database, its reply not yet read, and
    `GET /result` answered 409 QUEUED from the copy from before the write."""

    async def scenario() -> None:
        jobs, collection = store()
        writing = await cancel_stored_unanswered(jobs, collection, "j4")
        reading = asyncio.create_task(jobs.get("j4"))
        await asyncio.sleep(0)
        collection.replies.set()
        assert await writing is not None
        read = await reading
        assert read is not None and read.status.value == "CANCELLED"

    asyncio.run(scenario())


def test_a_write_cancelled_before_its_reply_is_read_again() -> None:
    """It may have landed, as when the reply never comes: the copy from before it is dropped."""

    async def scenario() -> None:
        jobs, collection = store()
        writing = await cancel_stored_unanswered(jobs, collection, "j5")
        writing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await writing
        read = await jobs.get("j5")
        assert read is not None and read.status.value == "CANCELLED"

    asyncio.run(scenario())
