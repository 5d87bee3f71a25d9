"""The job store on the real database, as MongoDB's adapter (conditions in the write's filter)
and as FerretDB's wrapper around it (conditions checked in this process, writes by `_id`)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from inference_common.mongo import async_client
from inference_common.settings import CommonSettings
from inference_service.adapters.ferretdb_jobs import FerretDbJobStore, is_ferretdb
from inference_service.adapters.mongo_jobs import MongoJobStore
from inference_service.domain.job import Change, JobResult, RetryPolicy
from inference_service.domain.lifecycle import JobStatus
from inference_service.ports import JobStore
from tests.conftest import load_localstack
from tests.unit.service.builders import creation, queued_creation

pytestmark = pytest.mark.integration
HOUR = timedelta(hours=1)
POLICY = RetryPolicy(max_attempts=3, deadline_seconds=60)
Store = Callable[[AsyncDatabase[dict[str, Any]]], JobStore]
STORES = pytest.mark.parametrize(
    "make_store", [MongoJobStore.on, FerretDbJobStore.on], ids=["mongodb", "ferretdb-wrapper"]
)


def run(
    settings: CommonSettings,
    scenario: Callable[[AsyncDatabase[dict[str, Any]]], Awaitable[None]],
) -> None:
    async def main() -> None:
        client = async_client(settings)
        try:
            await scenario(client[settings.mongodb_database])
        finally:
            await client.close()

    asyncio.run(main())


def new_job(job_id: str, at: datetime, execute: bool = True) -> Change:
    return queued_creation(job_id, at=at, policy=POLICY) if execute else creation(job_id, at=at)


@STORES
def test_save_is_a_compare_and_set_on_the_version(
    settings: CommonSettings, make_store: Store
) -> None:
    async def scenario(db: AsyncDatabase[dict[str, Any]]) -> None:
        jobs = make_store(db)
        at = datetime.now(UTC).replace(microsecond=0)
        created = new_job("a" * 32, at)
        await jobs.add(created)
        job = await jobs.get("a" * 32)
        assert job is not None and job == created.after
        started = job.start("ev1", job.execution_id or "", at)
        assert started is not None
        assert await jobs.save(started) is not None
        # Another writer decided on the same version: it loses, and changes nothing.
        cancelled = job.cancel("late", at, job.traceparent)
        assert await jobs.save(cancelled) is None
        stored = await jobs.get("a" * 32)
        assert stored is not None and stored.status is JobStatus.RUNNING
        assert stored.applied_events == ("ev1",)
        result = JobResult(stored.execution_id or "", 1, "x", "m", {"classes": []}, {}, at)
        done = stored.complete("ev2", result, at)
        assert done is not None and await jobs.save(done) is not None
        assert await jobs.get("a" * 32) == done.after

    run(settings, scenario)


@STORES
def test_outbox_is_removed_as_delivered_then_the_deleted_job_purged(
    settings: CommonSettings, make_store: Store
) -> None:
    async def scenario(db: AsyncDatabase[dict[str, Any]]) -> None:
        jobs = make_store(db)
        at = datetime.now(UTC)
        created = new_job("b" * 32, at)
        await jobs.add(created)
        deleted = created.after.delete(at, created.after.traceparent)
        pending = await jobs.save(deleted)
        assert pending is not None
        # created, execution_requested, cancelled, deleted: in order, all of them.
        assert pending.events == created.events + deleted.events and pending.deleted
        assert not await jobs.purge_deleted("b" * 32)  # events still pending
        await jobs.remove_delivered("b" * 32, pending.events[:1])
        [left] = await jobs.pending_outboxes(10)
        assert left.events == pending.events[1:]
        await jobs.remove_delivered("b" * 32, left.events)
        assert await jobs.pending_outboxes(10) == []
        assert await jobs.purge_deleted("b" * 32)
        assert await jobs.get("b" * 32) is None

    run(settings, scenario)


@STORES
def test_open_jobs_for_the_relay_and_the_sweeper(
    settings: CommonSettings, make_store: Store
) -> None:
    """On FerretDB these come from the store's own writes after one scan at start."""

    async def scenario(db: AsyncDatabase[dict[str, Any]]) -> None:
        jobs = make_store(db)
        at = datetime.now(UTC)
        late = new_job("c" * 32, at - 2 * HOUR)
        await jobs.add(late)
        await jobs.add(new_job("d" * 32, at))
        await jobs.add(new_job("e" * 32, at, execute=False))
        assert [j.id for j in await jobs.overdue(at, 10)] == ["c" * 32]
        pending = {o.job_id for o in await jobs.pending_outboxes(10)}
        assert pending == {"c" * 32, "d" * 32, "e" * 32}
        assert await jobs.save(late.after.expire(at, POLICY)) is not None
        assert await jobs.overdue(at, 10) == []
        for outbox in await jobs.pending_outboxes(10):
            await jobs.remove_delivered(outbox.job_id, outbox.events)
        assert await jobs.pending_outboxes(10) == []

        # A restarted service (a new store) finds the open jobs again.
        restarted = make_store(db)
        assert [j.id for j in await restarted.overdue(at + 2 * HOUR, 10)] == ["d" * 32]
        assert await restarted.pending_outboxes(10) == []

    run(settings, scenario)


@STORES
def test_idempotency_keys(settings: CommonSettings, make_store: Store) -> None:
    async def scenario(db: AsyncDatabase[dict[str, Any]]) -> None:
        jobs = make_store(db)
        at = datetime.now(UTC).replace(microsecond=0)
        assert await jobs.claim_key("alice", "k", "j1", at)
        assert not await jobs.claim_key("alice", "k", "j2", at)
        holder = await jobs.key_holder("alice", "k")
        assert holder is not None and holder.job_id == "j1"
        await jobs.release_key("alice", "k", "j2")  # not the holder: no effect
        assert await jobs.key_holder("alice", "k") is not None
        await jobs.release_key("alice", "k", "j1")
        assert await jobs.key_holder("alice", "k") is None

    run(settings, scenario)


def test_a_database_of_the_previous_version_is_brought_up_to_date(
    settings: CommonSettings,
) -> None:
    async def scenario(db: AsyncDatabase[dict[str, Any]]) -> None:
        await db["jobs"].create_index([("owner", 1), ("idem", 1)], unique=True, name="owner_idem")
        await MongoJobStore.ensure_indexes(db)
        names = {index["name"] async for index in await db["jobs"].list_indexes()}
        assert "owner_idem" not in names
        jobs = MongoJobStore.on(db)
        at = datetime.now(UTC)
        await jobs.add(new_job("1" * 32, at))
        await jobs.add(new_job("2" * 32, at))  # the same owner, neither with an `idem`
        # A job written before versions were kept counts as version 0.
        await db["jobs"].update_one({"_id": "1" * 32}, {"$unset": {"version": ""}})
        old = await jobs.get("1" * 32)
        assert old is not None and old.version == 0
        assert await jobs.save(old.cancel("r", at, old.traceparent)) is not None

    run(settings, scenario)


def test_detects_the_local_stacks_ferretdb(settings: CommonSettings) -> None:
    localstack = load_localstack()
    cfg = localstack.Config.from_env()
    ferretdb = localstack.status(cfg)["ferretdb"]
    if settings.mongodb_uri.get_secret_value() != cfg.mongodb_uri or not ferretdb.answering:
        pytest.skip("the database is not the local stack's FerretDB")

    async def scenario(db: AsyncDatabase[dict[str, Any]]) -> None:
        assert await is_ferretdb(db)

    run(settings, scenario)


def test_the_local_stacks_ferretdb_finds_an_id_by_its_index(settings: CommonSettings) -> None:
    """stack/ferretdb/patches.json: without it every lookup by `_id` scans the table."""
    localstack = load_localstack()
    cfg = localstack.Config.from_env()
    if settings.mongodb_uri.get_secret_value() != cfg.mongodb_uri:
        pytest.skip("the database is not the local stack's FerretDB")

    async def scenario(db: AsyncDatabase[dict[str, Any]]) -> None:
        if not await is_ferretdb(db):
            pytest.skip("a MongoDB, not FerretDB, answers on the local stack's port")
        await FerretDbJobStore.on(db).add(new_job("3" * 32, datetime.now(UTC)))
        plan = await db.command("explain", {"find": "jobs", "filter": {"_id": "3" * 32}})
        assert "USING INDEX" in " ".join(plan["queryPlanner"]["Plan"]), plan

    run(settings, scenario)
