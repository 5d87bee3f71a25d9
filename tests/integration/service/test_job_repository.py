"""Compare-and-set on the jobs collection, in both modes: conditions checked in this process
(FerretDB, writes by `_id` alone) and conditions in the write's filter (MongoDB)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest

from inference_common.mongo import async_client
from inference_common.settings import CommonSettings
from inference_service.domain.lifecycle import JobStatus
from inference_service.storage.jobs import JobRepository, is_ferretdb
from tests.conftest import load_localstack

pytestmark = pytest.mark.integration
HOUR = timedelta(hours=1)


def run(
    settings: CommonSettings,
    check_in_process: bool,
    scenario: Callable[[JobRepository], Awaitable[None]],
) -> None:
    async def main() -> None:
        client = async_client(settings)
        try:
            db = client[settings.mongodb_database]
            await scenario(JobRepository(db, lambda _id: None, check_in_process=check_in_process))
        finally:
            await client.close()

    asyncio.run(main())


def job(job_id: str, **fields: object) -> dict[str, object]:
    return {
        "_id": job_id,
        "owner": "alice",
        "model": "mobilenet-v2-imagenet-quant",
        "status": "QUEUED",
        "deleted": False,
        "execution_id": "e1",
        "execution_ids": ["e1"],
        "applied_events": [],
        "outbox": [],
        "outbox_pending": False,
        **fields,
    }


@pytest.mark.parametrize("check_in_process", [True, False], ids=["in-process", "in-filter"])
def test_change_and_fold_are_compare_and_set(
    settings: CommonSettings, check_in_process: bool
) -> None:
    async def scenario(jobs: JobRepository) -> None:
        await jobs.insert(job("j1"))
        running = {"status": JobStatus.RUNNING.value}
        assert await jobs.change("j1", sources={JobStatus.NEW}, set_fields=running) is None
        assert await jobs.change("j1", owner="bob", set_fields=running) is None
        changed = await jobs.change(
            "j1",
            owner="alice",
            sources={JobStatus.QUEUED},
            where={"execution_id": "e1"},
            set_fields=running,
        )
        assert changed is not None and changed["status"] == "RUNNING"

        fold = {"$set": {"status": "DONE"}, "$push": {"applied_events": "ev1"}}
        first = {"deleted": False, "applied_events": {"$ne": "ev1"}, "execution_ids": "e1"}
        assert await jobs.fold("j1", first, fold)
        assert not await jobs.fold("j1", first, fold)  # redelivered: already applied
        assert not await jobs.fold("missing", first, fold)
        stored = await jobs.get("j1")
        assert stored is not None and stored["status"] == "DONE"
        assert await jobs.get("j1", owner="bob") is None

    run(settings, check_in_process, scenario)


@pytest.mark.parametrize("check_in_process", [True, False], ids=["in-process", "in-filter"])
def test_outbox_flag_and_purge(settings: CommonSettings, check_in_process: bool) -> None:
    async def scenario(jobs: JobRepository) -> None:
        events = [{"id": "a"}, {"id": "b"}]
        await jobs.insert(job("j2", outbox=events, outbox_pending=True, deleted=True))
        assert await jobs.purge_deleted("j2") is None  # events still pending
        await jobs.remove_delivered("j2", events[:1])
        pending = await jobs.pending_outbox("j2")
        assert pending is not None and pending["outbox"] == events[1:]
        await jobs.remove_delivered("j2", events[1:])
        assert await jobs.pending_outbox("j2") is None
        purged = await jobs.purge_deleted("j2")
        assert purged is not None and purged["_id"] == "j2"
        assert await jobs.purge_deleted("j2") is None

    run(settings, check_in_process, scenario)


def test_detects_the_local_stacks_ferretdb(settings: CommonSettings) -> None:
    localstack = load_localstack()
    cfg = localstack.Config.from_env()
    ferretdb = localstack.status(cfg)["ferretdb"]
    if settings.mongodb_uri.get_secret_value() != cfg.mongodb_uri or not ferretdb.answering:
        pytest.skip("the database is not the local stack's FerretDB")

    async def main() -> bool:
        client = async_client(settings)
        try:
            return await is_ferretdb(client[settings.mongodb_database])
        finally:
            await client.close()

    assert asyncio.run(main())


@pytest.mark.parametrize("check_in_process", [True, False], ids=["in-process", "in-filter"])
def test_open_jobs_for_the_relay_and_the_sweeper(
    settings: CommonSettings, check_in_process: bool
) -> None:
    """On FerretDB these come from the repository's own writes after one scan at start."""

    async def scenario(jobs: JobRepository) -> None:
        at = datetime.now(UTC)
        event = {"id": "e1"}
        await jobs.insert(job("a", outbox=[event], outbox_pending=True, deadline=at - HOUR))
        await jobs.insert(job("b", deadline=at + HOUR))
        await jobs.insert(job("c", status="DONE", deadline=None))
        assert [j["_id"] for j in await jobs.pending_outboxes(10)] == ["a"]
        assert [j["_id"] for j in await jobs.overdue(at, 10)] == ["a"]

        await jobs.fold("a", {"deleted": False}, {"$set": {"status": "DONE", "deadline": None}})
        assert await jobs.overdue(at, 10) == []
        await jobs.remove_delivered("a", [event])
        assert await jobs.pending_outboxes(10) == []

        # A restarted service (a new repository) finds the open jobs again.
        restarted = JobRepository(
            jobs.collection.database, lambda _id: None, check_in_process=check_in_process
        )
        assert [j["_id"] for j in await restarted.overdue(at + 2 * HOUR, 10)] == ["b"]
        assert await restarted.pending_outboxes(10) == []

    run(settings, check_in_process, scenario)


def test_a_database_of_the_previous_version_is_brought_up_to_date(
    settings: CommonSettings,
) -> None:
    async def scenario(jobs: JobRepository) -> None:
        await jobs.collection.create_index(
            [("owner", 1), ("idem", 1)], unique=True, name="owner_idem"
        )
        await jobs.ensure_indexes()
        names = {index["name"] async for index in await jobs.collection.list_indexes()}
        assert "owner_idem" not in names
        await jobs.insert(job("first"))
        await jobs.insert(job("second"))  # the same owner, neither with an `idem`

    run(settings, True, scenario)


def test_the_local_stacks_ferretdb_finds_an_id_by_its_index(settings: CommonSettings) -> None:
    """stack/ferretdb/patches.json: without it every lookup by `_id` scans the table."""
    localstack = load_localstack()
    cfg = localstack.Config.from_env()
    if settings.mongodb_uri.get_secret_value() != cfg.mongodb_uri:
        pytest.skip("the database is not the local stack's FerretDB")

    async def scenario(jobs: JobRepository) -> None:
        if not await is_ferretdb(jobs.collection.database):
            pytest.skip("a MongoDB, not FerretDB, answers on the local stack's port")
        await jobs.insert(job("indexed"))
        plan = await jobs.collection.database.command(
            "explain", {"find": "jobs", "filter": {"_id": "indexed"}}
        )
        assert "USING INDEX" in " ".join(plan["queryPlanner"]["Plan"]), plan

    run(settings, True, scenario)
