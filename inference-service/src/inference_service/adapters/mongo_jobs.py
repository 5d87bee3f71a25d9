"""The job store on MongoDB: one document per job, its pending events in the same document.

Every write is a compare-and-set in the write's filter (the job's version, the outbox the
relay read): atomic on MongoDB across any number of replicas. FerretDB 1.24 needs more
(ferretdb_jobs.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase

from inference_service.adapters.documents import Document, Documents, MongoDocuments, translated
from inference_service.adapters.job_documents import (
    from_document,
    outbox_of,
    to_document,
    to_fields,
)
from inference_service.domain.batch import DELETED
from inference_service.domain.cursor import Cursor
from inference_service.domain.events import OutboxEvent
from inference_service.domain.job import Change, Job, JobFilter
from inference_service.domain.lifecycle import ACTIVE
from inference_service.ports import KeyHolder, Outbox

INDEXES: Final = [
    IndexModel([("owner", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)]),
    IndexModel([("owner", ASCENDING), ("status", ASCENDING), ("created_at", DESCENDING)]),
    IndexModel([("owner", ASCENDING), ("model", ASCENDING), ("created_at", DESCENDING)]),
    IndexModel([("outbox_pending", ASCENDING)]),
    IndexModel([("status", ASCENDING), ("deadline", ASCENDING)]),
]

# Indexes of earlier versions that would now get in the way: a database written by one of
# them is brought up to date at start. owner_idem: unique (owner, idem), the idempotency keys
# before they moved to their own collection; new jobs have no `idem`, so it would refuse the
# second job of each owner.
RETIRED_INDEXES: Final = frozenset({"owner_idem"})

# What a job read leaves out: the events waiting for the relay.
_JOB: Final = {"outbox": 0}
_OUTBOX: Final = {"outbox": 1, "deleted": 1, "image": 1}
_STATUS: Final = {"status": 1, "deleted": 1}
# A batch's jobs are asked about this many at a time (one `$in` on `_id` each).
_STATUS_CHUNK: Final = 500


def status_of(document: Document) -> str:
    """The job's status for a batch's count: DELETED once deleted."""
    return DELETED if document.get("deleted") else str(document["status"])


def overdue_query(at: datetime) -> Document:
    return {"status": {"$in": sorted(ACTIVE)}, "deadline": {"$lt": at}, "deleted": False}


def key_id(owner: str, key: str) -> str:
    return hashlib.sha256(f"{owner}\0{key}".encode()).hexdigest()


def version_condition(version: int) -> Any:
    # Documents written before versions were kept have none: they count as version 0.
    return version if version else {"$in": [0, None]}


def filter_query(owner: str, where: JobFilter) -> Document:
    query: Document = {"owner": owner, "deleted": False}
    if where.statuses:
        query["status"] = {"$in": sorted(s.value for s in where.statuses)}
    if where.model is not None:
        query["model"] = where.model
    if where.task is not None:
        query["task"] = where.task
    created: Document = {}
    if where.created_after is not None:
        created["$gt"] = where.created_after
    if where.created_before is not None:
        created["$lt"] = where.created_before
    if created:
        query["created_at"] = created
    return query


class MongoJobStore:
    def __init__(self, jobs: Documents, keys: Documents) -> None:
        self.jobs = jobs
        # Idempotency-Key -> job, one document per key, found by `_id` like everything else.
        self.keys = keys

    @classmethod
    def on(cls, db: AsyncDatabase[Document]) -> MongoJobStore:
        return cls(MongoDocuments(db["jobs"]), MongoDocuments(db["idempotency_keys"]))

    @staticmethod
    async def ensure_indexes(db: AsyncDatabase[Document]) -> None:
        """Only the missing ones, one at a time: FerretDB 1.24 drops the connection (a panic
        in the server) when one createIndexes names several indexes that already exist."""
        collection = db["jobs"]
        with translated():
            existing = {index["name"] async for index in await collection.list_indexes()}
            for name in RETIRED_INDEXES & existing:
                await collection.drop_index(name)
            for model in INDEXES:
                if model.document["name"] not in existing:
                    await collection.create_indexes([model])

    # --- jobs ---

    async def get(self, job_id: str) -> Job | None:
        document = await self.jobs.find_one(job_id, _JOB)
        return from_document(document) if document is not None else None

    async def add(self, change: Change) -> None:
        await self.jobs.insert(to_document(change.after, change.events))

    async def save(self, change: Change) -> Outbox | None:
        assert change.before is not None, "a new job is added, not saved"
        update: Document = {"$set": to_fields(change.fields)}
        if change.events:
            update["$set"]["outbox_pending"] = True
            update["$push"] = {"outbox": {"$each": [e.to_document() for e in change.events]}}
        query = {"_id": change.after.id, "version": version_condition(change.before.version)}
        after = await self.jobs.update(query, update)
        return outbox_of(after) if after is not None else None

    async def page(
        self, owner: str, where: JobFilter, after: Cursor | None, limit: int
    ) -> list[Job]:
        query = filter_query(owner, where)
        if after is not None:
            query["$or"] = [
                {"created_at": {"$lt": after.created_at}},
                {"created_at": after.created_at, "_id": {"$lt": after.job_id}},
            ]
        found = await self.jobs.find(
            query, _JOB, sort=[("created_at", DESCENDING), ("_id", DESCENDING)], limit=limit
        )
        return [from_document(document) for document in found]

    async def overdue(self, at: datetime, limit: int) -> list[Job]:
        found = await self.jobs.find(overdue_query(at), _JOB, limit=limit)
        return [from_document(document) for document in found]

    async def statuses(self, job_ids: Sequence[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for start in range(0, len(job_ids), _STATUS_CHUNK):
            chunk = list(job_ids[start : start + _STATUS_CHUNK])
            for document in await self.jobs.find({"_id": {"$in": chunk}}, _STATUS):
                found[str(document["_id"])] = status_of(document)
        return found

    # --- the outbox ---

    async def pending_outboxes(self, limit: int) -> list[Outbox]:
        found = await self.jobs.find({"outbox_pending": True}, _OUTBOX, limit=limit)
        return [outbox_of(document) for document in found]

    async def remove_delivered(self, job_id: str, delivered: Sequence[OutboxEvent]) -> None:
        """One write when the outbox holds just these (the usual case); else drop exactly
        these, and clear the flag only if nothing new arrived meanwhile."""
        entries = [event.to_document() for event in delivered]
        cleared = {"$set": {"outbox": [], "outbox_pending": False}}
        if await self.jobs.update({"_id": job_id, "outbox": entries}, cleared) is not None:
            return
        left = await self.jobs.update({"_id": job_id}, {"$pullAll": {"outbox": entries}})
        if left is not None and not left.get("outbox"):
            emptied = {"_id": job_id, "outbox": {"$size": 0}}
            await self.jobs.update(emptied, {"$set": {"outbox_pending": False}})

    async def purge_deleted(self, job_id: str) -> bool:
        settled = {"_id": job_id, "deleted": True, "outbox_pending": False}
        return await self.jobs.delete(settled) is not None

    # --- idempotency keys ---

    async def key_holder(self, owner: str, key: str) -> KeyHolder | None:
        holder = await self.keys.find_one(key_id(owner, key))
        if holder is None:
            return None
        return KeyHolder(holder["job_id"], holder["at"], holder.get("claimant"))

    async def claim_key(
        self, owner: str, key: str, job_id: str, at: datetime, claimant: str | None = None
    ) -> bool:
        # A unique `_id`, so this holds across replicas.
        claim = {"_id": key_id(owner, key), "job_id": job_id, "at": at, "claimant": claimant}
        return await self.keys.insert(claim)

    async def release_key(self, owner: str, key: str, job_id: str) -> None:
        await self.keys.delete({"_id": key_id(owner, key), "job_id": job_id})
