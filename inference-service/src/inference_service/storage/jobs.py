"""The jobs collection: one document per job, its pending events in the same document."""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from inference_service.domain.cursor import Cursor
from inference_service.domain.events import OutboxEvent
from inference_service.domain.lifecycle import JobStatus
from inference_service.metrics import ServiceMetrics

Document = dict[str, Any]

INDEXES = [
    IndexModel([("owner", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)]),
    IndexModel([("owner", ASCENDING), ("status", ASCENDING), ("created_at", DESCENDING)]),
    IndexModel([("owner", ASCENDING), ("model", ASCENDING), ("created_at", DESCENDING)]),
    IndexModel([("owner", ASCENDING), ("idem", ASCENDING)], unique=True, name="owner_idem"),
    IndexModel([("outbox_pending", ASCENDING)]),
    IndexModel([("status", ASCENDING), ("deadline", ASCENDING)]),
]


@dataclass(frozen=True)
class JobFilter:
    statuses: Collection[JobStatus] = ()
    model: str | None = None
    task: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None

    def query(self, owner: str) -> Document:
        query: Document = {"owner": owner, "deleted": False}
        if self.statuses:
            query["status"] = {"$in": sorted(s.value for s in self.statuses)}
        if self.model is not None:
            query["model"] = self.model
        if self.task is not None:
            query["task"] = self.task
        created: Document = {}
        if self.created_after is not None:
            created["$gt"] = self.created_after
        if self.created_before is not None:
            created["$lt"] = self.created_before
        if created:
            query["created_at"] = created
        return query


class JobLocks:
    """Serialises this process's writes to one job document (striped, bounded memory).

    FerretDB 1.x applies an update as read, modify in Go, write back, with no transaction
    around it: two concurrent updates of one document lose one of them, and a filter on the
    status is no compare-and-set at all (measured: 50 concurrent CAS, 6 winners). Holding a
    per-job lock around every write makes them atomic again within a process. MongoDB does
    not need it and does not mind it; across replicas on FerretDB nothing can help, so the
    service runs as one replica there (docs/architecture.md).
    """

    def __init__(self, stripes: int = 256) -> None:
        self._stripes = [asyncio.Lock() for _ in range(stripes)]

    def __call__(self, job_id: str) -> asyncio.Lock:
        return self._stripes[zlib.crc32(job_id.encode()) % len(self._stripes)]


class JobRepository:
    """Reads and compare-and-set writes; a write that adds events also wakes the relay.

    Every write of a job passes here, so here the created jobs and status changes are counted.
    """

    def __init__(
        self,
        db: AsyncDatabase[Document],
        on_outbox_write: Callable[[str], None],
        metrics: ServiceMetrics | None = None,
    ) -> None:
        self.collection: AsyncCollection[Document] = db["jobs"]
        self._on_outbox_write = on_outbox_write
        self._metrics = metrics or ServiceMetrics()
        self._locks = JobLocks()

    async def ensure_indexes(self) -> None:
        """Only the missing ones, one at a time: FerretDB 1.24 drops the connection (a panic
        in the server) when one createIndexes names several indexes that already exist."""
        existing = {index["name"] async for index in await self.collection.list_indexes()}
        for model in INDEXES:
            if model.document["name"] not in existing:
                await self.collection.create_indexes([model])

    # --- the API's reads and writes ---

    async def insert(self, job: Document) -> None:
        """Raises DuplicateKeyError when the owner already used the idempotency key."""
        await self.collection.insert_one(job)
        self._metrics.jobs_created.labels(job["model"]).inc()
        self._metrics.job_transitions.labels(job["status"]).inc()
        if job["outbox"]:
            self._on_outbox_write(job["_id"])

    async def get(self, job_id: str, owner: str | None = None) -> Document | None:
        query: Document = {"_id": job_id, "deleted": False}
        if owner is not None:
            query["owner"] = owner
        return await self.collection.find_one(query, {"outbox": 0, "applied_events": 0})

    async def find_by_idempotency_slot(self, owner: str, slot: str) -> Document | None:
        return await self.collection.find_one(
            {"owner": owner, "idem": slot}, {"outbox": 0, "applied_events": 0}
        )

    async def page(
        self, owner: str, where: JobFilter, after: Cursor | None, limit: int
    ) -> list[Document]:
        """Newest first; `limit` + 1 documents tell the caller whether a next page exists."""
        query = where.query(owner)
        if after is not None:
            query["$or"] = [
                {"created_at": {"$lt": after.created_at}},
                {"created_at": after.created_at, "_id": {"$lt": after.job_id}},
            ]
        cursor = (
            self.collection.find(query, {"outbox": 0, "applied_events": 0})
            .sort([("created_at", DESCENDING), ("_id", DESCENDING)])
            .limit(limit + 1)
        )
        return [job async for job in cursor]

    async def change(
        self,
        job_id: str,
        *,
        owner: str | None = None,
        sources: Collection[JobStatus] | None = None,
        where: Mapping[str, Any] | None = None,
        set_fields: Mapping[str, Any],
        events: Sequence[OutboxEvent] = (),
        push: Mapping[str, Any] | None = None,
    ) -> Document | None:
        """One atomic compare-and-set: the new state and its events, or nothing (None).

        The filter holds the expected status (`sources`) and anything else the caller read
        (`where`); when another writer got there first nothing is written.
        """
        query: Document = {"_id": job_id, "deleted": False, **(where or {})}
        if owner is not None:
            query["owner"] = owner
        if sources is not None:
            query["status"] = {"$in": sorted(s.value for s in sources)}
        update: Document = {"$set": dict(set_fields)}
        pushes: Document = dict(push or {})
        if events:
            update["$set"]["outbox_pending"] = True
            pushes["outbox"] = {"$each": [event.to_document() for event in events]}
        if pushes:
            update["$push"] = pushes
        # No projection: FerretDB 1.x does not implement one on findAndModify.
        async with self._locks(job_id):
            changed = await self.collection.find_one_and_update(
                query, update, return_document=ReturnDocument.AFTER
            )
        if changed is not None:
            self._entered(set_fields.get("status"))
            if events:
                self._on_outbox_write(job_id)
        return changed

    def _entered(self, status: str | None) -> None:
        if status is not None:
            self._metrics.job_transitions.labels(status).inc()

    # --- the outbox relay ---

    async def pending_outbox(self, job_id: str) -> Document | None:
        """One job's pending events, read by `_id`: the lookup FerretDB answers without a scan."""
        return await self.collection.find_one(
            {"_id": job_id, "outbox_pending": True}, {"outbox": 1, "deleted": 1, "image": 1}
        )

    async def pending_outboxes(self, limit: int) -> list[Document]:
        """Every job with pending events: a scan, for recovery (restarts, Kafka outages)."""
        cursor = self.collection.find(
            {"outbox_pending": True}, {"outbox": 1, "deleted": 1, "image": 1}
        ).limit(limit)
        return [job async for job in cursor]

    async def remove_delivered(self, job_id: str, delivered: list[Document]) -> None:
        """Drop exactly the delivered entries; the flag clears only if nothing new arrived."""
        async with self._locks(job_id):
            await self.collection.update_one({"_id": job_id}, {"$pullAll": {"outbox": delivered}})
            await self.collection.update_one(
                {"_id": job_id, "outbox": {"$size": 0}}, {"$set": {"outbox_pending": False}}
            )

    async def purge_deleted(self, job_id: str) -> Document | None:
        """Remove a deleted job once its last events are out; returns it for image cleanup."""
        async with self._locks(job_id):
            return await self.collection.find_one_and_delete(
                {"_id": job_id, "deleted": True, "outbox_pending": False}
            )

    # --- the result folder and the sweeper ---

    async def fold(self, query: Mapping[str, Any], update: Mapping[str, Any]) -> bool:
        async with self._locks(str(query["_id"])):
            result = await self.collection.update_one(dict(query), dict(update))
        if result.modified_count != 1:
            return False
        self._entered(update.get("$set", {}).get("status"))
        return True

    async def overdue(self, at: datetime, limit: int) -> list[Document]:
        cursor = self.collection.find(
            {
                "status": {"$in": [JobStatus.QUEUED.value, JobStatus.RUNNING.value]},
                "deadline": {"$lt": at},
                "deleted": False,
            },
            {"outbox": 0, "applied_events": 0},
        ).limit(limit)
        return [job async for job in cursor]
