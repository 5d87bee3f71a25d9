"""Idempotent creates, and listing: filters, newest first, cursor pages."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from inference_service.adapters.mongo_jobs import key_id
from tests.integration.service.harness import (
    RunningService,
    TopicReader,
    assert_problem,
    headers_of,
    image_bytes,
    jobs_in_db,
    new_job,
    post_job,
    stored_images,
)

pytestmark = pytest.mark.integration
HOUR = timedelta(hours=1)


def test_a_retry_with_the_same_key_returns_the_same_job(
    service: RunningService, jobs_topic: TopicReader
) -> None:
    client = service.client
    key = {"Idempotency-Key": "order-42"}
    first = post_job(client, image=image_bytes(), options='{"top_k":2}', headers=key)
    assert first.status_code == 201
    again = post_job(client, image=image_bytes(), options='{"top_k":2}', headers=key)
    assert again.status_code == 200
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"]

    mongo, jobs = jobs_in_db(service.settings)
    try:
        assert jobs.count_documents({}) == 1
    finally:
        mongo.close()
    assert stored_images(service.settings) == 1
    messages = jobs_topic.read(1, settle=1.0)
    assert [headers_of(m)["ce_type"] for m in messages] == ["io.cvinference.job.created.v1"]

    # The same key for a different request is a client bug, not a retry.
    different = post_job(client, image=image_bytes(), options='{"top_k":3}', headers=key)
    assert_problem(different, 422, "idempotency-key-reused")
    # Another key, or none, creates a new job.
    assert (
        post_job(client, image=image_bytes(), headers={"Idempotency-Key": "order-43"}).status_code
        == 201
    )
    assert post_job(client, image=image_bytes()).status_code == 201


def test_a_deleted_job_frees_its_key(service: RunningService) -> None:
    key = {"Idempotency-Key": "once"}
    first = post_job(service.client, headers=key).json()
    assert service.client.delete(f"/jobs/{first['id']}").status_code == 204
    second = post_job(service.client, headers=key)
    assert second.status_code == 201 and second.json()["id"] != first["id"]


def test_a_key_claimed_by_a_request_in_flight(service: RunningService) -> None:
    """A key held by a create that has not written its job yet: 409 while that request may
    still finish; once the claim is old (that process died), the key is free again."""
    mongo, jobs = jobs_in_db(service.settings)
    keys = mongo[service.settings.mongodb_database]["idempotency_keys"]
    try:
        claim = {"_id": key_id("anonymous", "in-flight"), "job_id": "not-written-yet"}
        keys.insert_one({**claim, "at": datetime.now(UTC)})
        in_flight = post_job(service.client, headers={"Idempotency-Key": "in-flight"})
        assert_problem(in_flight, 409, "idempotency-key-in-progress")

        keys.update_one({"_id": claim["_id"]}, {"$set": {"at": datetime.now(UTC) - HOUR}})
        created = post_job(service.client, headers={"Idempotency-Key": "in-flight"})
        assert created.status_code == 201
        held = keys.find_one({"_id": claim["_id"]})
        assert held is not None and held["job_id"] == created.json()["id"]
        assert jobs.count_documents({}) == 1
    finally:
        mongo.close()


def test_a_key_claimed_by_this_replicas_dead_predecessor_is_free_at_once(
    service: RunningService,
) -> None:
    """A claim made under this replica's name by another process was left by a process that
    died (one live process holds a name): the retry after a restart need not wait for it."""
    mongo, jobs = jobs_in_db(service.settings)
    keys = mongo[service.settings.mongodb_database]["idempotency_keys"]
    try:
        post_job(service.client, headers={"Idempotency-Key": "mine"})
        mine = keys.find_one({"_id": key_id("anonymous", "mine")})
        assert mine is not None
        replica = mine["claimant"].rsplit("/", 1)[0]
        for key, claimant in [("dead", f"{replica}/earlier"), ("other", "other-replica/x")]:
            claim = {"job_id": f"unwritten-{key}", "at": datetime.now(UTC), "claimant": claimant}
            keys.insert_one({"_id": key_id("anonymous", key), **claim})

        assert post_job(service.client, headers={"Idempotency-Key": "dead"}).status_code == 201
        in_flight = post_job(service.client, headers={"Idempotency-Key": "other"})
        assert_problem(in_flight, 409, "idempotency-key-in-progress")
        assert jobs.count_documents({}) == 2
    finally:
        mongo.close()


def test_pages_cover_every_job_once_newest_first(service: RunningService) -> None:
    client = service.client
    created = [post_job(client, name=f"job {i}").json()["id"] for i in range(7)]
    seen: list[dict] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = client.get("/jobs", params=params).json()
        seen.extend(page["items"])
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    listed = [job["id"] for job in seen]
    assert len(listed) == len(set(listed)) and set(listed) == set(created)
    stamps = [(job["created_at"], job["id"]) for job in seen]
    assert stamps == sorted(stamps, reverse=True)


def test_filters(service: RunningService) -> None:
    client = service.client
    new = new_job(client)
    time.sleep(0.01)  # distinct creation instants (millisecond precision) for the time filters
    queued = new_job(client, execute=True)
    time.sleep(0.01)
    detect = new_job(client, model="ssd-mobilenet-v1-coco-quant")
    cancelled = new_job(client)
    client.post(f"/jobs/{cancelled['id']}/cancellation")

    def ids(**params: object) -> set[str]:
        response = client.get("/jobs", params=params)
        assert response.status_code == 200, response.text
        return {job["id"] for job in response.json()["items"]}

    assert ids(status="QUEUED") == {queued["id"]}
    assert ids(status=["NEW", "CANCELLED"]) == {new["id"], detect["id"], cancelled["id"]}
    assert ids(model="ssd-mobilenet-v1-coco-quant") == {detect["id"]}
    assert ids(task="classification") == {new["id"], queued["id"], cancelled["id"]}
    assert ids(task="object_detection", status="NEW") == {detect["id"]}
    middle = datetime.fromisoformat(queued["created_at"])
    assert ids(created_after=middle.isoformat()) == {detect["id"], cancelled["id"]}
    assert ids(created_before=middle.isoformat()) == {new["id"]}
    # A model the catalog lacks is no filter at all: the contract refuses it.
    unknown = client.get("/jobs", params={"model": "resnet-9000"})
    assert unknown.status_code == 400, unknown.text
