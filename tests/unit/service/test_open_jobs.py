"""The open jobs kept in process on FerretDB survive a write that the database stored but
never answered (found by the fault-injection suite: a job inserted as FerretDB was killed
stayed QUEUED with its events in the outbox, seen by neither the relay nor the sweeper)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo.errors import AutoReconnect

from inference_service.storage.jobs import JobRepository

NOW = datetime(2026, 1, 1, tzinfo=UTC)


class Cursor:
    def __init__(self, documents: list[dict[str, Any]]) -> None:
        self.documents = documents

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        async def each() -> AsyncIterator[dict[str, Any]]:
            for document in self.documents:
                yield document

        return each()


class DyingCollection:
    """Stores every insert; the ones after `die()` raise as a killed server's reply would."""

    def __init__(self) -> None:
        self.documents: dict[str, dict[str, Any]] = {}
        self.dying = False

    async def insert_one(self, document: dict[str, Any]) -> None:
        self.documents[document["_id"]] = dict(document)
        if self.dying:
            raise AutoReconnect("127.0.0.1:27017: connection closed")

    async def find_one(self, query: dict[str, Any], projection: Any = None) -> Any:
        found = self.documents.get(query["_id"])
        return dict(found) if found is not None else None

    def find(self, query: dict[str, Any], projection: Any = None) -> Cursor:
        return Cursor([])  # the start-up scan: nothing stored yet


def repository() -> tuple[JobRepository, DyingCollection]:
    collection = DyingCollection()
    db = {"jobs": collection, "idempotency_keys": DyingCollection()}
    return JobRepository(db, lambda _id: None, check_in_process=True), collection  # type: ignore[arg-type]


def queued_job(job_id: str) -> dict[str, Any]:
    return {
        "_id": job_id,
        "status": "QUEUED",
        "deleted": False,
        "deadline": NOW + timedelta(seconds=60),
        "outbox": [{"id": "e1"}],
        "outbox_pending": True,
    }


def test_a_job_stored_by_an_unanswered_insert_is_still_published_and_swept() -> None:
    async def scenario() -> None:
        jobs, collection = repository()
        assert await jobs.pending_outboxes(10) == []  # the start-up scan is done
        collection.dying = True
        with pytest.raises(AutoReconnect):
            await jobs.insert(queued_job("j1"))
        collection.dying = False

        assert [job["_id"] for job in await jobs.pending_outboxes(10)] == ["j1"]
        overdue = await jobs.overdue(NOW + timedelta(seconds=61), 10)
        assert [job["_id"] for job in overdue] == ["j1"]

    asyncio.run(scenario())


def test_an_unanswered_insert_that_stored_nothing_leaves_nothing_behind() -> None:
    async def scenario() -> None:
        jobs, collection = repository()
        await jobs.pending_outboxes(10)
        collection.dying = True
        with pytest.raises(AutoReconnect):
            await jobs.insert(queued_job("j2"))
        del collection.documents["j2"]  # this time it was lost on the way

        assert await jobs.pending_outboxes(10) == []
        assert await jobs.overdue(NOW + timedelta(seconds=61), 10) == []

    asyncio.run(scenario())
