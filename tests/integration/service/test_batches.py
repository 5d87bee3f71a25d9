"""Batches on the real Kafka and MongoDB API: multipart and archives, idempotent retries, a
bad file among good ones, the limits, the JSON Lines results, cancel and delete."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from typing import Any

import httpx
import pytest

from tests.integration.service.harness import (
    Executor,
    RunningService,
    TopicReader,
    assert_problem,
    image_bytes,
    jobs_in_db,
    requests_for,
    running,
    wait_for,
)

pytestmark = pytest.mark.integration
MODEL = "mobilenet-v2-imagenet-quant"
GOOD = {"cat.jpg": image_bytes("cat_720p.jpg"), "banana.jpg": image_bytes("banana.jpg")}


def post_batch(
    client: httpx.Client,
    files: list[tuple[str, tuple[str, bytes, str]]],
    headers: dict[str, str] | None = None,
    options: str | None = None,
) -> httpx.Response:
    form = {"model": MODEL, **({"options": options} if options else {})}
    return client.post("/batches", files=files, data=form, headers=headers)


def parts(images: dict[str, bytes]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", (name, data, "image/jpeg")) for name, data in images.items()]


def zip_of(images: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in images.items():
            archive.writestr(f"photos/{name}", data)
        archive.writestr("__MACOSX/photos/._cat.jpg", b"resource fork")
    return buffer.getvalue()


def tar_gz_of(images: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in images.items():
            info = tarfile.TarInfo(f"photos/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def job_count(service: RunningService) -> int:
    mongo, jobs = jobs_in_db(service.settings)
    try:
        return int(jobs.count_documents({}))
    finally:
        mongo.close()


def jobs_by_name(client: httpx.Client) -> dict[str, str]:
    return {job["name"]: job["id"] for job in client.get("/jobs").json()["items"]}


def wait_finished(client: httpx.Client, batch_id: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def finished() -> bool:
        response = client.get(f"/batches/{batch_id}")
        assert response.status_code == 200, response.text
        seen.update(response.json())
        return bool(seen["finished"])

    wait_for(finished, 30, f"batch {batch_id} to finish")
    return seen


def results(client: httpx.Client, batch_id: str) -> list[dict[str, Any]]:
    response = client.get(f"/batches/{batch_id}/results")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/jsonl")
    return [json.loads(line) for line in response.text.splitlines()]


def test_a_bad_file_is_listed_and_the_others_run_to_results(
    service: RunningService, jobs_topic: TopicReader, executor: Executor
) -> None:
    client = service.client
    files = [*parts(GOOD), ("files", ("notes.jpg", b"not an image at all", "image/jpeg"))]
    response = post_batch(client, files, options='{"top_k":2}')
    assert response.status_code == 201, response.text
    batch = response.json()
    assert response.headers["location"].endswith(f"/batches/{batch['id']}")
    assert batch["total"] == 3 and not batch["finished"]
    assert batch["counts"]["QUEUED"] == 2 and batch["counts"]["REJECTED"] == 1
    assert batch["options"]["top_k"] == 2
    [rejected] = batch["rejected"]
    assert rejected["name"] == "notes.jpg" and rejected["index"] == 2
    assert rejected["problem"]["type"] == "urn:cvinference:problem:unsupported-image-type"
    assert rejected["problem"]["status"] == 415

    early = client.get(f"/batches/{batch['id']}/results")
    body = assert_problem(early, 409, "batch-not-finished")
    assert body["counts"]["QUEUED"] == 2 and early.headers["retry-after"]

    ids = jobs_by_name(client)
    assert set(ids) == {"cat.jpg", "banana.jpg"}
    [cat_request] = requests_for(jobs_topic, ids["cat.jpg"], 1)
    [banana_request] = requests_for(jobs_topic, ids["banana.jpg"], 1)
    assert cat_request["options"]["top_k"] == 2
    executor.completed(cat_request)
    executor.failed(banana_request, "model_error", retryable=False)

    finished = wait_finished(client, batch["id"])
    assert finished["progress"] == 1
    assert finished["counts"] == {
        "NEW": 0, "QUEUED": 0, "RUNNING": 0, "DONE": 1, "FAILED": 1, "CANCELLED": 0,
        "REJECTED": 1, "DELETED": 0,
    }  # fmt: skip
    lines = results(client, batch["id"])
    assert [(line["index"], line["name"], line["status"]) for line in lines] == [
        (0, "cat.jpg", "DONE"),
        (1, "banana.jpg", "FAILED"),
        (2, "notes.jpg", "REJECTED"),
    ]
    job_result = client.get(f"/jobs/{ids['cat.jpg']}/result").json()
    assert lines[0]["job_id"] == ids["cat.jpg"] and lines[0]["result"] == job_result["result"]
    assert lines[1]["problem"]["type"] == "urn:cvinference:problem:job-failed"
    assert lines[1]["problem"]["error"]["code"] == "model_error"
    assert lines[2]["job_id"] is None and lines[2]["problem"]["status"] == 415


@pytest.mark.parametrize(
    ("archive", "filename"), [(zip_of, "photos.zip"), (tar_gz_of, "photos.tar.gz")]
)
def test_an_archive_makes_one_job_per_image_and_a_retry_makes_none(
    service: RunningService, jobs_topic: TopicReader, archive: Any, filename: str
) -> None:
    client = service.client
    upload = [("archive", (filename, archive(GOOD), "application/octet-stream"))]
    key = {"Idempotency-Key": f"upload-{filename}"}
    first = post_batch(client, upload, key)
    assert first.status_code == 201, first.text
    assert first.json()["total"] == 2 and first.json()["rejected"] == []
    again = post_batch(client, upload, key)
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"]
    assert job_count(service) == 2
    assert set(jobs_by_name(client)) == {"photos/cat.jpg", "photos/banana.jpg"}
    # Each job was queued once: one execution request each, no more after a while.
    for job_id in jobs_by_name(client).values():
        requests_for(jobs_topic, job_id, 1)
    jobs_topic.read(0, timeout=1.0)
    for job_id in jobs_by_name(client).values():
        assert len(requests_for(jobs_topic, job_id, 1)) == 1
    # The same key for another model is a client bug, not a retry.
    other = client.post(
        "/batches", files=upload, data={"model": "ssd-mobilenet-v1-coco-quant"}, headers=key
    )
    assert_problem(other, 422, "idempotency-key-reused")


def test_cancel_and_delete_act_on_every_job(service: RunningService) -> None:
    client = service.client
    batch = post_batch(client, parts(GOOD)).json()
    ids = jobs_by_name(client)
    cancelled = client.post(f"/batches/{batch['id']}/cancellation", json={"reason": "changed"})
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["finished"] and cancelled.json()["counts"]["CANCELLED"] == 2
    lines = results(client, batch["id"])
    assert {line["status"] for line in lines} == {"CANCELLED"}
    assert client.get(f"/jobs/{ids['cat.jpg']}").json()["status"] == "CANCELLED"

    assert client.delete(f"/batches/{batch['id']}").status_code == 204
    assert_problem(client.get(f"/batches/{batch['id']}"), 404, "batch-not-found")
    for job_id in ids.values():
        assert_problem(client.get(f"/jobs/{job_id}"), 404, "job-not-found")
    assert_problem(client.delete(f"/batches/{batch['id']}"), 404, "batch-not-found")


def test_over_the_batch_limits_nothing_is_created(isolated_env: dict[str, str]) -> None:
    size = len(GOOD["cat.jpg"]) + len(GOOD["banana.jpg"])
    with running(batch_max_files=2, batch_max_bytes=size + 10) as service:
        client = service.client
        three = {**GOOD, "again.jpg": GOOD["banana.jpg"]}
        assert_problem(post_batch(client, parts(three)), 413, "batch-too-large")
        archive = [("archive", ("a.zip", zip_of(three), "application/zip"))]
        assert_problem(post_batch(client, archive), 413, "batch-too-large")
        # A body far over the limit is refused before it is read.
        big = {"cat.jpg": GOOD["cat.jpg"] * 40}
        assert_problem(post_batch(client, parts(big)), 413, "request-too-large")
        assert job_count(service) == 0
        assert post_batch(client, parts(GOOD)).status_code == 201
