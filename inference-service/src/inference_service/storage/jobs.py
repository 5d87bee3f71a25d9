"""The jobs collection: one document per job, its pending events in the same document."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import zlib
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, PyMongoError

from inference_service.domain.cursor import Cursor
from inference_service.domain.events import OutboxEvent
from inference_service.domain.lifecycle import JobStatus
from inference_service.metrics import ServiceMetrics

Document = dict[str, Any]

INDEXES = [
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


async def is_ferretdb(db: AsyncDatabase[Document]) -> bool:
    return "ferretdbVersion" in await db.client.admin.command("buildInfo")


def matches(document: Mapping[str, Any], conditions: Mapping[str, Any]) -> bool:
    """The part of MongoDB's query language this repository's writes use, evaluated here:
    equality (an array matches when it holds the value; None matches a missing field), `$in`,
    `$ne`, `$size` and `$lt`, on dotted paths."""
    return all(_match(_lookup(document, path), cond) for path, cond in conditions.items())


def _lookup(document: Mapping[str, Any], path: str) -> Any:
    value: Any = document
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _match(value: Any, condition: Any) -> bool:
    if isinstance(condition, Mapping):
        return all(_OPERATORS[op](value, arg) for op, arg in condition.items())
    return _equals(value, condition)


def _equals(value: Any, expected: Any) -> bool:
    return bool(value == expected or (isinstance(value, list) and expected in value))


_OPERATORS: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "$in": lambda value, options: any(_equals(value, option) for option in options),
    "$ne": lambda value, other: not _equals(value, other),
    "$size": lambda value, size: isinstance(value, list) and len(value) == size,
    "$lt": lambda value, bound: value is not None and value < bound,
}


def key_id(owner: str, key: str) -> str:
    return hashlib.sha256(f"{owner}\0{key}".encode()).hexdigest()


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


_OVERDUE_STATUSES: Final = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)


def _overdue_query(at: datetime) -> Document:
    return {"status": {"$in": list(_OVERDUE_STATUSES)}, "deadline": {"$lt": at}, "deleted": False}


class OpenJobs:
    """Which jobs have events to publish and which have a deadline, kept from this process's
    own writes: the FerretDB stand-in for the indexes on `outbox_pending` and `deadline`,
    which FerretDB 1.24 creates but does not use (each such query decodes every job). One
    scan fills it at start; the job service runs as one replica on FerretDB anyway."""

    def __init__(self) -> None:
        self.pending: set[str] = set()
        self.deadlines: dict[str, datetime] = {}
        # Jobs whose last write failed without an answer (the database went away): it may
        # have landed, so they are read again by `_id` before the relay or sweeper trusts
        # the sets above. Without this, a job inserted as FerretDB died was never published.
        self.doubtful: set[str] = set()
        self.filled = False

    def track(self, job: Mapping[str, Any]) -> None:
        job_id = str(job["_id"])
        if job.get("outbox_pending"):
            self.pending.add(job_id)
        else:
            self.pending.discard(job_id)
        waiting = job.get("status") in _OVERDUE_STATUSES and not job.get("deleted")
        if waiting and job.get("deadline") is not None:
            self.deadlines[job_id] = job["deadline"]
        else:
            self.deadlines.pop(job_id, None)

    def forget(self, job_id: str) -> None:
        self.pending.discard(job_id)
        self.deadlines.pop(job_id, None)
        self.doubtful.discard(job_id)


class JobRepository:
    """Reads and compare-and-set writes; a write that adds events also wakes the relay.

    Every read and write of one job goes by `_id` alone when `check_in_process` (FerretDB):
    FerretDB 1.24 pushes a lone `_id` filter down to SQLite (served by the `_id` index with the
    local stack's patch) but evaluates `_id` plus any other condition in Go over every
    document (18 ms at 400 jobs, growing). There the conditions are checked here, under the
    job's lock, which already makes the write atomic (JobLocks). On MongoDB the conditions
    stay in the filter: a compare-and-set that holds across replicas.

    Every write of a job passes here, so here the created jobs and status changes are counted.
    """

    def __init__(
        self,
        db: AsyncDatabase[Document],
        on_outbox_write: Callable[[str], None],
        *,
        check_in_process: bool,
        metrics: ServiceMetrics | None = None,
    ) -> None:
        self.collection: AsyncCollection[Document] = db["jobs"]
        # Idempotency-Key -> job, one document per key, found by `_id` like everything else.
        self.keys: AsyncCollection[Document] = db["idempotency_keys"]
        self._on_outbox_write = on_outbox_write
        self._metrics = metrics or ServiceMetrics()
        self._locks = JobLocks()
        self._check_in_process = check_in_process
        self._open = OpenJobs() if check_in_process else None

    async def ensure_indexes(self) -> None:
        """Only the missing ones, one at a time: FerretDB 1.24 drops the connection (a panic
        in the server) when one createIndexes names several indexes that already exist."""
        existing = {index["name"] async for index in await self.collection.list_indexes()}
        for name in RETIRED_INDEXES & existing:
            await self.collection.drop_index(name)
        for model in INDEXES:
            if model.document["name"] not in existing:
                await self.collection.create_indexes([model])

    # --- the API's reads and writes ---

    async def insert(self, job: Document) -> None:
        with self._doubt_on_error(job["_id"]):
            await self.collection.insert_one(job)
        self._track(job)
        self._metrics.jobs_created.labels(job["model"]).inc()
        self._metrics.job_transitions.labels(job["status"]).inc()
        if job["outbox"]:
            self._on_outbox_write(job["_id"])

    async def get(self, job_id: str, owner: str | None = None) -> Document | None:
        job = await self.collection.find_one({"_id": job_id}, {"outbox": 0, "applied_events": 0})
        if job is None or job["deleted"] or owner not in (None, job["owner"]):
            return None
        return job

    # --- idempotency keys: reserved before the job is written, released when it is deleted ---

    async def key_holder(self, owner: str, key: str) -> Document | None:
        """`{job_id, at}` of the job that holds the owner's key, or None."""
        return await self.keys.find_one({"_id": key_id(owner, key)})

    async def claim_key(
        self, owner: str, key: str, job_id: str, at: datetime, claimant: str | None = None
    ) -> bool:
        """Reserve the key for `job_id`; False when another request holds it (a unique `_id`,
        so this holds across replicas)."""
        claim = {"_id": key_id(owner, key), "job_id": job_id, "at": at, "claimant": claimant}
        try:
            await self.keys.insert_one(claim)
        except DuplicateKeyError:
            return False
        return True

    async def release_key(self, owner: str, key: str, job_id: str) -> None:
        """Free the key if `job_id` still holds it."""
        slot = key_id(owner, key)
        held = {"job_id": job_id}
        async with self._locks(slot):
            if await self._holds(slot, held, self.keys):
                await self.keys.delete_one(self._filter(slot, held))

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
        conditions: Document = {"deleted": False, **(where or {})}
        if owner is not None:
            conditions["owner"] = owner
        if sources is not None:
            conditions["status"] = {"$in": sorted(s.value for s in sources)}
        update: Document = {"$set": dict(set_fields)}
        pushes: Document = dict(push or {})
        if events:
            update["$set"]["outbox_pending"] = True
            pushes["outbox"] = {"$each": [event.to_document() for event in events]}
        if pushes:
            update["$push"] = pushes
        # No projection: FerretDB 1.x does not implement one on findAndModify.
        async with self._locks(job_id):
            if not await self._holds(job_id, conditions):
                return None
            with self._doubt_on_error(job_id):
                changed = await self.collection.find_one_and_update(
                    self._filter(job_id, conditions), update, return_document=ReturnDocument.AFTER
                )
            self._track(changed)
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
        """One job's pending events, read by `_id`: the one lookup FerretDB pushes down."""
        job = await self.collection.find_one(
            {"_id": job_id}, {"outbox": 1, "outbox_pending": 1, "deleted": 1, "image": 1}
        )
        return job if job is not None and job["outbox_pending"] else None

    async def pending_outboxes(self, limit: int) -> list[Document]:
        """Jobs with pending events, for recovery (restarts, Kafka outages)."""
        if self._open is None:
            cursor = self.collection.find(
                {"outbox_pending": True}, {"outbox": 1, "deleted": 1, "image": 1}
            ).limit(limit)
            return [job async for job in cursor]
        await self._fill_open_jobs()
        await self._settle_doubts()
        found = []
        for job_id in sorted(self._open.pending)[:limit]:
            job = await self.pending_outbox(job_id)
            if job is None:
                self._open.pending.discard(job_id)  # settled since; the entry was stale
            else:
                found.append(job)
        return found

    async def remove_delivered(self, job_id: str, delivered: list[Document]) -> None:
        """Drop exactly the delivered entries; the flag clears only if nothing new arrived."""
        emptied = {"outbox": {"$size": 0}}
        async with self._locks(job_id):
            with self._doubt_on_error(job_id):
                left = await self.collection.find_one_and_update(
                    {"_id": job_id},
                    {"$pullAll": {"outbox": delivered}},
                    return_document=ReturnDocument.AFTER,
                )
                # What is left tells whether to clear the flag: exact on FerretDB (under the
                # job's lock); on MongoDB a hint, and the filter decides.
                if left is not None and matches(left, emptied):
                    self._track(
                        await self.collection.find_one_and_update(
                            self._filter(job_id, emptied),
                            {"$set": {"outbox_pending": False}},
                            return_document=ReturnDocument.AFTER,
                        )
                    )

    async def purge_deleted(self, job_id: str) -> Document | None:
        """Remove a deleted job once its last events are out; returns it for image cleanup."""
        settled = {"deleted": True, "outbox_pending": False}
        async with self._locks(job_id):
            if not await self._holds(job_id, settled):
                return None
            with self._doubt_on_error(job_id):
                purged = await self.collection.find_one_and_delete(self._filter(job_id, settled))
        if self._open is not None:
            self._open.forget(job_id)
        return purged

    # --- the result folder and the sweeper ---

    async def fold(
        self, job_id: str, conditions: Mapping[str, Any], update: Mapping[str, Any]
    ) -> bool:
        async with self._locks(job_id):
            if not await self._holds(job_id, conditions):
                return False
            with self._doubt_on_error(job_id):
                folded = await self.collection.find_one_and_update(
                    self._filter(job_id, conditions),
                    dict(update),
                    return_document=ReturnDocument.AFTER,
                )
            self._track(folded)
        if folded is None:
            return False
        self._entered(update.get("$set", {}).get("status"))
        return True

    # --- compare-and-set, by `_id` alone on FerretDB ---

    async def _holds(
        self,
        job_id: str,
        conditions: Mapping[str, Any],
        collection: AsyncCollection[Document] | None = None,
    ) -> bool:
        """Call under the job's lock. On MongoDB the write's filter does the checking."""
        if not self._check_in_process:
            return True
        current = await (collection if collection is not None else self.collection).find_one(
            {"_id": job_id}
        )
        return current is not None and matches(current, conditions)

    def _filter(self, job_id: str, conditions: Mapping[str, Any]) -> Document:
        return {"_id": job_id} if self._check_in_process else {"_id": job_id, **conditions}

    async def overdue(self, at: datetime, limit: int) -> list[Document]:
        projection = {"outbox": 0, "applied_events": 0}
        if self._open is None:
            cursor = self.collection.find(_overdue_query(at), projection).limit(limit)
            return [job async for job in cursor]
        await self._fill_open_jobs()
        await self._settle_doubts()
        due = [job_id for job_id, deadline in self._open.deadlines.items() if deadline < at]
        found = []
        for job_id in due[:limit]:
            job = await self.collection.find_one({"_id": job_id}, projection)
            if job is None:
                self._open.forget(job_id)
                continue
            self._open.track(job)  # the stored state wins over what was tracked
            if matches(job, _overdue_query(at)):
                found.append(job)
        return found

    # --- FerretDB: the open jobs, from this process's writes ---

    async def _fill_open_jobs(self) -> None:
        """Once: every job with pending events or a deadline (a scan)."""
        if self._open is None or self._open.filled:
            return
        query = {"$or": [{"outbox_pending": True}, {"deadline": {"$ne": None}}]}
        fields = {"outbox_pending": 1, "deadline": 1, "status": 1, "deleted": 1}
        async for job in self.collection.find(query, fields):
            self._open.track(job)
        self._open.filled = True

    async def _settle_doubts(self) -> None:
        """Read each job whose last write went unanswered, and track what was stored."""
        if self._open is None:
            return
        fields = {"outbox_pending": 1, "deadline": 1, "status": 1, "deleted": 1}
        for job_id in sorted(self._open.doubtful):
            job = await self.collection.find_one({"_id": job_id}, fields)
            self._open.doubtful.discard(job_id)
            if job is None:
                self._open.forget(job_id)
            else:
                self._open.track(job)

    @contextlib.contextmanager
    def _doubt_on_error(self, job_id: str) -> Iterator[None]:
        try:
            yield
        except PyMongoError:
            if self._open is not None:
                self._open.doubtful.add(job_id)
            raise

    def _track(self, job: Mapping[str, Any] | None) -> None:
        if self._open is not None and job is not None:
            self._open.track(job)
