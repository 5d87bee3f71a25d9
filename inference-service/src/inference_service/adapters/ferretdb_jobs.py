"""The job store on FerretDB 1.24: the MongoDB adapter, wrapped where FerretDB falls short.

FerretDB 1.x applies an update as read, modify in Go, write back, with no transaction around
it: two concurrent updates of one document lose one of them, and a filter on the status is no
compare-and-set at all (measured: 50 concurrent CAS, 6 winners). It also pushes only a lone
`_id` filter down to SQLite (served by the `_id` index with the local stack's patch) and
evaluates anything else in Go over every document (docs/architecture.md). So here:

- every write of one document holds that document's lock in this process, which makes it
  atomic again, and goes by `_id` alone; its other conditions are checked here, against the
  document as this process last wrote it (or read by `_id` when it does not know it);
- a read of a document this process wrote is answered from what it wrote: no other writer
  can have changed it since (a read that meets a write of it in flight waits for its answer);
- the relay's and the sweepers' questions (which jobs have events to publish, which are past
  their deadline, which finished jobs hold an image or a result retention may remove) are
  answered from this process's own writes, after one scan at start.

Both hold for one replica only, which is how the service runs on FerretDB; on MongoDB use
MongoJobStore alone, with any number of replicas.
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from pymongo.asynchronous.database import AsyncDatabase

from inference_service.adapters.documents import Document, Documents, MongoDocuments
from inference_service.adapters.job_documents import from_document, outbox_of
from inference_service.adapters.mongo_jobs import (
    MongoJobStore,
    overdue_query,
    purgeable_query,
    status_of,
)
from inference_service.domain.cursor import Cursor
from inference_service.domain.events import OutboxEvent
from inference_service.domain.job import Change, Job, JobFilter, RetentionPolicy
from inference_service.domain.lifecycle import ACTIVE, TERMINAL
from inference_service.ports import KeyHolder, Outbox, StoreError

# Documents this process remembers as it last wrote them; older ones are read by `_id`.
KNOWN_DOCUMENTS: Final = 10_000


async def is_ferretdb(db: AsyncDatabase[Document]) -> bool:
    return "ferretdbVersion" in await db.client.admin.command("buildInfo")


def matches(document: Mapping[str, Any], conditions: Mapping[str, Any]) -> bool:
    """The part of MongoDB's query language the job store uses, evaluated here: equality (an
    array matches when it holds the value or equals it; None matches a missing field), `$in`,
    `$ne`, `$size` and `$lt`, on dotted paths, and a top-level `$or` of such conditions."""
    return all(
        any(matches(document, branch) for branch in cond)
        if path == "$or"
        else _match(_lookup(document, path), cond)
        for path, cond in conditions.items()
    )


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


class JobLocks:
    """Serialises this process's writes to one document (striped, bounded memory)."""

    def __init__(self, stripes: int = 256) -> None:
        self._stripes = [asyncio.Lock() for _ in range(stripes)]

    def __call__(self, doc_id: str) -> asyncio.Lock:
        return self._stripes[zlib.crc32(doc_id.encode()) % len(self._stripes)]


class OpenJobs:
    """Which jobs have events to publish, which have a deadline and which finished jobs still
    hold an image or a result, kept from this process's own writes: the stand-in for the
    indexes on `outbox_pending`, `deadline` and (`status`, `updated_at`), which FerretDB 1.24
    creates but does not use. One scan fills it at start."""

    def __init__(self) -> None:
        self.pending: set[str] = set()
        self.deadlines: dict[str, datetime] = {}
        # Finished jobs holding content, as the few fields purgeable_query asks about.
        self.held: dict[str, Document] = {}
        # Jobs whose last write failed without an answer (the database went away): it may
        # have landed, so they are read again by `_id` before the sets above are trusted.
        self.doubtful: set[str] = set()
        self.filled = False

    def track(self, job: Mapping[str, Any]) -> None:
        job_id = str(job["_id"])
        if job.get("outbox_pending"):
            self.pending.add(job_id)
        else:
            self.pending.discard(job_id)
        waiting = job.get("status") in ACTIVE and not job.get("deleted")
        if waiting and job.get("deadline") is not None:
            self.deadlines[job_id] = job["deadline"]
        else:
            self.deadlines.pop(job_id, None)
        held = _held(job)
        if held is not None:
            self.held[job_id] = held
        else:
            self.held.pop(job_id, None)

    def forget(self, job_id: str) -> None:
        self.pending.discard(job_id)
        self.deadlines.pop(job_id, None)
        self.held.pop(job_id, None)
        self.doubtful.discard(job_id)


def _held(job: Mapping[str, Any]) -> Document | None:
    """A finished job's retention fields, its image and result reduced to whether they are
    there (a few hundred bytes a job); None for a job that holds nothing retention removes."""
    holds_image = bool(job.get("image")) and job.get("image_deleted_at") is None
    if job.get("status") not in TERMINAL or job.get("deleted"):
        return None
    if not holds_image and not job.get("result"):
        return None
    return {
        "status": job["status"],
        "deleted": False,
        "updated_at": job["updated_at"],
        "keep_image": bool(job.get("keep_image")),
        "image": True if job.get("image") else None,
        "image_deleted_at": job.get("image_deleted_at"),
        "result": True if job.get("result") else None,
    }


class CheckedDocuments:
    """A collection whose writes are atomic within this process and go by `_id` alone."""

    def __init__(self, inner: Documents, open_jobs: OpenJobs | None = None) -> None:
        self.inner = inner
        self.open_jobs = open_jobs
        self._locks = JobLocks()
        self._known: OrderedDict[str, Document] = OrderedDict()

    def known(self, doc_id: str) -> Document | None:
        return self._known.get(doc_id)

    async def find_one(
        self, doc_id: str, projection: Mapping[str, int] | None = None
    ) -> Document | None:
        """The document as this process last wrote it (no other writer has written since),
        else read by `_id`. A write of it in flight is waited for: the database may hold it
        already (others can see it there), so the copy from before it is no answer."""
        lock = self._locks(doc_id)
        if lock.locked():
            async with lock:
                pass
        known = self._known.get(doc_id)
        if known is not None:
            return _projected(known, projection)
        return await self.inner.find_one(doc_id, projection)

    async def find(
        self,
        query: Mapping[str, Any],
        projection: Mapping[str, int] | None = None,
        *,
        sort: Sequence[tuple[str, int]] = (),
        limit: int = 0,
    ) -> list[Document]:
        return await self.inner.find(query, projection, sort=sort, limit=limit)

    async def insert(self, document: Document) -> bool:
        doc_id = str(document["_id"])
        async with self._locks(doc_id):
            with self._doubt_on_error(doc_id):
                inserted = await self.inner.insert(document)
            if inserted:
                self._remember(doc_id, document)
            return inserted

    async def update(self, query: Mapping[str, Any], update: Mapping[str, Any]) -> Document | None:
        doc_id, conditions = _split(query)
        async with self._locks(doc_id):
            if not await self._holds(doc_id, conditions):
                return None
            with self._doubt_on_error(doc_id):
                after = await self.inner.update({"_id": doc_id}, update)
            self._remember(doc_id, after)
            return after

    async def delete(self, query: Mapping[str, Any]) -> Document | None:
        doc_id, conditions = _split(query)
        async with self._locks(doc_id):
            if not await self._holds(doc_id, conditions):
                return None
            with self._doubt_on_error(doc_id):
                deleted = await self.inner.delete({"_id": doc_id})
            self._remember(doc_id, None)
            return deleted

    async def _holds(self, doc_id: str, conditions: Mapping[str, Any]) -> bool:
        """Call under the document's lock."""
        current = self._known.get(doc_id)
        if current is None:
            current = await self.inner.find_one(doc_id)
            self._remember(doc_id, current)
        return current is not None and matches(current, conditions)

    def _remember(self, doc_id: str, document: Document | None) -> None:
        if document is None:
            self._known.pop(doc_id, None)
            if self.open_jobs is not None:
                self.open_jobs.forget(doc_id)
            return
        self._known[doc_id] = document
        self._known.move_to_end(doc_id)
        while len(self._known) > KNOWN_DOCUMENTS:
            self._known.popitem(last=False)
        if self.open_jobs is not None:
            self.open_jobs.track(document)

    @contextlib.contextmanager
    def _doubt_on_error(self, doc_id: str) -> Iterator[None]:
        try:
            yield
        except (StoreError, asyncio.CancelledError):
            # It may have landed: read it again before trusting what is known.
            self._known.pop(doc_id, None)
            if self.open_jobs is not None:
                self.open_jobs.doubtful.add(doc_id)
            raise


def _projected(document: Document, projection: Mapping[str, int] | None) -> Document:
    """A copy with MongoDB's projection applied: all exclusions, or inclusions plus `_id`."""
    if not projection:
        return dict(document)
    if not any(projection.values()):
        return {name: value for name, value in document.items() if name not in projection}
    return {
        name: value for name, value in document.items() if name == "_id" or projection.get(name)
    }


def _split(query: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    conditions = dict(query)
    return str(conditions.pop("_id")), conditions


_STATE: Final = {
    "outbox_pending": 1,
    "deadline": 1,
    "status": 1,
    "deleted": 1,
    "updated_at": 1,
    "keep_image": 1,
    "image": 1,
    "image_deleted_at": 1,
    "result": 1,
}


class FerretDbJobStore:
    """MongoJobStore on checked collections; the open jobs answered from its own writes."""

    def __init__(self, jobs: CheckedDocuments, keys: CheckedDocuments) -> None:
        assert jobs.open_jobs is not None, "the jobs collection tracks the open jobs"
        self._jobs = jobs
        self._open: OpenJobs = jobs.open_jobs
        self._store = MongoJobStore(jobs, keys)

    @classmethod
    def on(cls, db: AsyncDatabase[Document]) -> FerretDbJobStore:
        return cls(
            CheckedDocuments(MongoDocuments(db["jobs"]), OpenJobs()),
            CheckedDocuments(MongoDocuments(db["idempotency_keys"])),
        )

    # --- as on MongoDB ---

    async def get(self, job_id: str) -> Job | None:
        return await self._store.get(job_id)

    async def add(self, change: Change) -> None:
        await self._store.add(change)

    async def save(self, change: Change) -> Outbox | None:
        return await self._store.save(change)

    async def page(
        self, owner: str, where: JobFilter, after: Cursor | None, limit: int
    ) -> list[Job]:
        # A scan on FerretDB, whatever the indexes: the one query that cannot avoid it.
        return await self._store.page(owner, where, after, limit)

    async def remove_delivered(self, job_id: str, delivered: Sequence[OutboxEvent]) -> None:
        await self._store.remove_delivered(job_id, delivered)

    async def purge_deleted(self, job_id: str) -> bool:
        return await self._store.purge_deleted(job_id)

    async def statuses(self, job_ids: Sequence[str]) -> dict[str, str]:
        """One read by `_id` per job (an `$in` is a scan here), answered from this process's
        own writes where it knows the job: the folder's, for a batch's running jobs."""
        found: dict[str, str] = {}
        for job_id in job_ids:
            document = await self._jobs.find_one(job_id, _STATE)
            if document is not None:
                found[job_id] = status_of(document)
        return found

    async def key_holder(self, owner: str, key: str) -> KeyHolder | None:
        return await self._store.key_holder(owner, key)

    async def claim_key(
        self, owner: str, key: str, job_id: str, at: datetime, claimant: str | None = None
    ) -> bool:
        return await self._store.claim_key(owner, key, job_id, at, claimant)

    async def release_key(self, owner: str, key: str, job_id: str) -> None:
        await self._store.release_key(owner, key, job_id)

    # --- from this process's own writes ---

    async def pending_outboxes(self, limit: int) -> list[Outbox]:
        await self._settle()
        found = []
        for job_id in sorted(self._open.pending)[:limit]:
            document = await self._current(job_id)
            if document is not None and document.get("outbox_pending"):
                found.append(outbox_of(document))
        return found

    async def overdue(self, at: datetime, limit: int) -> list[Job]:
        await self._settle()
        due = [job_id for job_id, deadline in self._open.deadlines.items() if deadline < at]
        found = []
        for job_id in due[:limit]:
            document = await self._current(job_id)
            if document is not None and matches(document, overdue_query(at)):
                found.append(from_document(document))
        return found

    async def purgeable(self, at: datetime, policy: RetentionPolicy, limit: int) -> list[Job]:
        await self._settle()
        query = purgeable_query(at, policy)
        due = [job_id for job_id, held in self._open.held.items() if matches(held, query)]
        found = []
        for job_id in due[:limit]:
            document = await self._current(job_id)
            if document is not None and matches(document, query):
                found.append(from_document(document))
        return found

    async def _current(self, job_id: str) -> Document | None:
        """The job as last written here, else as read by `_id` (the stored state wins)."""
        document = self._jobs.known(job_id) or await self._jobs.find_one(job_id)
        if document is None:
            self._open.forget(job_id)
        else:
            self._open.track(document)
        return document

    async def _settle(self) -> None:
        """Once, every job with pending events or a deadline (a scan); then each job whose
        last write went unanswered, read again."""
        if not self._open.filled:
            query = {
                "$or": [
                    {"outbox_pending": True},
                    {"deadline": {"$ne": None}},
                    {"status": {"$in": sorted(TERMINAL)}, "deleted": False},
                ]
            }
            for document in await self._jobs.find(query, _STATE):
                self._open.track(document)
            self._open.filled = True
        for job_id in sorted(self._open.doubtful):
            self._open.doubtful.discard(job_id)
            await self._current(job_id)
