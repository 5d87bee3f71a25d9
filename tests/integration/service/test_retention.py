"""Retention and deletion on the real stack: the bytes leave the image store, a `purged` event
goes out, what is gone answers 410, and bytes another job shares stay."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from inference_common.events import EventType
from inference_common.image_refs import IMAGE_COLLECTION
from inference_common.image_store import ImageKey
from inference_common.kafka import ensure_topics
from inference_common.mongo import sync_client
from inference_service.settings import ServiceSettings
from tests.contracts import validate_kafka_event
from tests.integration.service.harness import (
    Executor,
    RunningService,
    TopicReader,
    assert_problem,
    free_port,
    headers_of,
    image_bytes,
    jobs_in_db,
    new_job,
    replica_settings,
    requests_for,
    service_settings,
    start_service,
    wait_for,
    wait_status,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def jobs_topic(isolated_env: dict[str, str]) -> Iterator[TopicReader]:
    settings = service_settings()
    ensure_topics(settings)
    reader = TopicReader(settings, settings.topic_jobs)
    try:
        yield reader
    finally:
        reader.close()


def finish(service: RunningService, topic: TopicReader, job: dict[str, Any]) -> None:
    (request,) = requests_for(topic, job["id"], 1)
    Executor(service.settings).completed(request)
    wait_status(service.client, job["id"], "DONE")


def image_held(settings: ServiceSettings, job: dict[str, Any]) -> bool:
    """Whether the image store holds the job's copy: its file, or its document."""
    key = ImageKey(job["image"]["sha256"], job["id"])
    if settings.image_store == "filesystem":
        return Path(settings.image_store_dir, key.path).is_file()
    client = sync_client(settings)
    try:
        images = client[settings.mongodb_database][IMAGE_COLLECTION]
        return images.count_documents({"_id": key.path}) == 1
    finally:
        client.close()


def purges(topic: TopicReader, job_id: str) -> list[list[str]]:
    """What each `purged` event of the job says was removed, checked against the contract;
    one entry per event id (delivery is at-least-once, consumers deduplicate by id)."""
    topic.read(0, timeout=0.3)
    events = {
        headers_of(message)["ce_id"]: validate_kafka_event(message.headers(), message.value())
        for message in topic.messages
        if message.key() == job_id.encode()
        and headers_of(message)["ce_type"] == EventType.PURGED.value
    }
    return [data["removed"] for data in events.values()]


def test_the_image_goes_when_the_job_finishes_and_the_result_when_retention_ends(
    jobs_topic: TopicReader,
) -> None:
    settings = service_settings(purge_interval_seconds=0.3)
    service = start_service(settings)
    client = service.client
    try:
        done = new_job(client, execute=True)
        shared = new_job(client)  # NEW, the same bytes: its copy must stay
        kept = new_job(client, execute=True, keep_image=True)
        assert kept["keep_image"] and not done["keep_image"]
        finish(service, jobs_topic, done)
        finish(service, jobs_topic, kept)

        wait_for(lambda: client.get(f"/jobs/{done['id']}").json()["image_deleted_at"], 20, "purge")
        assert not image_held(settings, done)
        gone = assert_problem(client.get(f"/jobs/{done['id']}/image"), 410, "purged")
        assert gone["job_status"] == "DONE" and gone["removed_at"]
        assert client.get(f"/jobs/{done['id']}/result").status_code == 200  # kept a week
        assert image_held(settings, shared)
        assert client.get(f"/jobs/{shared['id']}/image").content == image_bytes()
        # Finished with `done`, but asked to keep its image: every sweep since passed it by.
        assert image_held(settings, kept)
        assert client.get(f"/jobs/{kept['id']}").json()["image_deleted_at"] is None
    finally:
        service.stop()

    # The same jobs under a retention of results that has ended for them.
    expired = service_settings(
        service_port=free_port(), purge_interval_seconds=0.3, result_retention_seconds=0.5
    )
    restarted = start_service(expired)
    client = restarted.client
    try:
        for job in (done, kept):
            wait_for(lambda j=job: client.get(f"/jobs/{j['id']}").json()["purged_at"], 20, "purge")
            gone = assert_problem(client.get(f"/jobs/{job['id']}/result"), 410, "purged")
            assert gone["job_status"] == "DONE"
            record = client.get(f"/jobs/{job['id']}").json()
            assert record["status"] == "DONE" and record["image"]["sha256"]  # the record stays
            assert_problem(client.get(f"/jobs/{job['id']}/image"), 410, "purged")
        assert not image_held(expired, kept)
        assert image_held(expired, shared)  # NEW: never finished, never purged
        wait_for(lambda: purges(jobs_topic, kept["id"]) == [["image", "result"]], 20, "events")
        # Its image went with the fold of its result (no event of its own), its result now.
        wait_for(lambda: purges(jobs_topic, done["id"]) == [["result"]], 20, "events")
        assert purges(jobs_topic, shared["id"]) == []
        mongo, jobs = jobs_in_db(expired)
        try:
            stored = jobs.find_one({"_id": done["id"]})
            assert stored is not None and stored["result"] is None and stored["purged_at"]
        finally:
            mongo.close()
    finally:
        restarted.stop()


@pytest.mark.parametrize("image_store", ["filesystem", "mongodb"])
def test_delete_removes_the_bytes_and_the_result_but_not_a_shared_copy(
    jobs_topic: TopicReader, image_store: str
) -> None:
    settings = service_settings(image_store=image_store, run_purger=False)
    service = start_service(settings)
    client = service.client
    try:
        job = new_job(client, execute=True)
        other = new_job(client, execute=True)
        assert job["image"]["sha256"] == other["image"]["sha256"]
        finish(service, jobs_topic, job)
        finish(service, jobs_topic, other)
        assert image_held(settings, job) and image_held(settings, other)

        assert client.delete(f"/jobs/{job['id']}").status_code == 204
        assert not image_held(settings, job)  # gone before the answer
        mongo, jobs = jobs_in_db(settings)
        try:
            stored = jobs.find_one({"_id": job["id"]})
            # The result went with the delete; the record goes once `deleted` is published.
            assert stored is None or stored["result"] is None
            wait_for(lambda: jobs.count_documents({"_id": job["id"]}) == 0, 20, "the record")
        finally:
            mongo.close()
        assert_problem(client.get(f"/jobs/{job['id']}/result"), 404, "job-not-found")
        assert image_held(settings, other)
        assert client.get(f"/jobs/{other['id']}/image").content == image_bytes()
        assert client.get(f"/jobs/{other['id']}/result").status_code == 200
    finally:
        service.stop()


@pytest.mark.usefixtures("atomic_mongodb")
def test_two_replicas_sweep_at_once_and_each_job_is_purged_once(jobs_topic: TopicReader) -> None:
    # Images kept a moment after their job is done, so that the sweeps remove them (with no
    # retention period the fold removes a done job's image itself, without a sweep).
    a, b = replica_settings(purge_interval_seconds=0.1, image_retention_seconds=0.5)
    replicas = [start_service(settings) for settings in (a, b)]
    try:
        jobs = [new_job(replicas[i % 2].client, execute=True) for i in range(12)]
        for job in jobs:
            (request,) = requests_for(jobs_topic, job["id"], 1)
            Executor(a).completed(request)
        client = replicas[0].client

        def purged(job: dict[str, Any]) -> bool:
            return bool(client.get(f"/jobs/{job['id']}").json()["image_deleted_at"])

        wait_for(lambda: all(purged(job) for job in jobs), 30, "every image removed")
        wait_for(lambda: all(purges(jobs_topic, job["id"]) for job in jobs), 30, "the events")
    finally:
        for replica in replicas:
            replica.stop()
    purges(jobs_topic, jobs[0]["id"])  # whatever was still on its way
    for job in jobs:
        assert not image_held(a, job)
        # Both replicas may delete the bytes; one compare-and-set wins, one event goes out.
        assert purges(jobs_topic, job["id"]) == [["image"]], job["id"]
