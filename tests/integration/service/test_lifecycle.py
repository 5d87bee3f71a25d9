"""Create, image, execute, fold results, cancel, delete: through HTTP, against the real stack."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from inference_common.events import EventType
from tests.contracts import validate_kafka_event
from tests.integration.service.harness import (
    Executor,
    RunningService,
    TopicReader,
    assert_problem,
    headers_of,
    image_bytes,
    jobs_in_db,
    new_job,
    post_job,
    requests_for,
    stored_images,
    wait_for,
    wait_status,
)

pytestmark = pytest.mark.integration


def test_upload_execute_and_read_the_result(
    service: RunningService, jobs_topic: TopicReader, executor: Executor
) -> None:
    client = service.client
    created = post_job(client, image=image_bytes(), options='{"top_k":3}', name="cat")
    assert created.status_code == 201, created.text
    job = created.json()
    assert created.headers["location"] == f"/api/v1/inference/jobs/{job['id']}"
    assert job["status"] == "NEW" and job["attempt"] == 0 and job["error"] is None
    assert job["options"] == {"top_k": 3} and job["task"] == "classification"
    assert job["image"]["width"] == 1280 and job["image"]["media_type"] == "image/jpeg"
    assert client.get(job["links"]["image"].removeprefix("/api/v1/inference")).content == (
        image_bytes()
    )

    executed = client.post(f"/jobs/{job['id']}/execution")
    assert executed.status_code == 202, executed.text
    assert executed.json()["status"] == "QUEUED" and executed.json()["attempt"] == 1
    not_yet = client.get(f"/jobs/{job['id']}/result")
    assert assert_problem(not_yet, 409, "job-not-done")["job_status"] == "QUEUED"
    assert not_yet.headers["retry-after"] == "1"

    (request,) = requests_for(jobs_topic, job["id"], 1)
    assert request["image"]["sha256"] == job["image"]["sha256"]
    executor.started(request)
    wait_status(client, job["id"], "RUNNING")
    executor.completed(request)
    done = wait_status(client, job["id"], "DONE")
    assert done["error"] is None

    result = client.get(f"/jobs/{job['id']}/result")
    assert result.status_code == 200, result.text
    body = result.json()
    assert body["result"]["classes"][0]["label"] == "cat"
    assert body["timings"] == {"decode": 1.5, "invoke": 4.0}
    assert (body["job_id"], body["attempt"], body["task"]) == (job["id"], 1, "classification")


def test_json_create_then_image_then_execute(service: RunningService) -> None:
    client = service.client
    job = post_job(client, model="ssd-mobilenet-v1-coco-quant").json()
    assert job["image"] is None and job["options"] == {"score_threshold": 0.5}
    assert assert_problem(client.post(f"/jobs/{job['id']}/execution"), 409, "illegal-transition")

    put = client.put(
        f"/jobs/{job['id']}/image",
        content=image_bytes("kite_and_cold.jpg"),
        headers={"content-type": "image/jpeg"},
    )
    assert put.status_code == 200, put.text
    assert put.json()["image"]["media_type"] == "image/jpeg"
    # Replaced while still NEW: the old bytes go, the new ones stay.
    replaced = client.put(
        f"/jobs/{job['id']}/image",
        content=image_bytes("cat.bmp"),
        headers={"content-type": "image/bmp"},
    )
    assert replaced.json()["image"]["media_type"] == "image/bmp"
    assert stored_images(service.settings) == 1

    assert client.post(f"/jobs/{job['id']}/execution").json()["status"] == "QUEUED"
    again = client.post(f"/jobs/{job['id']}/execution")
    assert assert_problem(again, 409, "illegal-transition")["job_status"] == "QUEUED"
    late_image = client.put(
        f"/jobs/{job['id']}/image", content=image_bytes(), headers={"content-type": "image/jpeg"}
    )
    assert_problem(late_image, 409, "illegal-transition")


def test_create_and_execute_in_one_call(service: RunningService, jobs_topic: TopicReader) -> None:
    job = new_job(service.client, execute=True)
    assert job["status"] == "QUEUED" and job["attempt"] == 1
    messages = jobs_topic.read(2)
    types = [headers_of(m)["ce_type"] for m in messages if m.key() == job["id"].encode()]
    assert types == [EventType.CREATED.value, EventType.EXECUTION_REQUESTED.value]


def test_a_raw_image_body_creates_and_executes_a_job(
    service: RunningService, jobs_topic: TopicReader
) -> None:
    # The fields travel in the query; the body is the image itself, no form.
    params = {"model": "mobilenet-v2-imagenet-quant", "execute": "true", "top_k": "3"}
    params["name"] = "raw cat"
    created = service.client.post(
        "/jobs", params=params, content=image_bytes(), headers={"content-type": "image/jpeg"}
    )
    assert created.status_code == 201, created.text
    job = created.json()
    assert (job["status"], job["name"], job["options"]) == ("QUEUED", "raw cat", {"top_k": 3})
    assert job["image"]["media_type"] == "image/jpeg"
    messages = [m for m in jobs_topic.read(2) if m.key() == job["id"].encode()]
    assert [headers_of(m)["ce_type"] for m in messages] == [
        EventType.CREATED.value,
        EventType.EXECUTION_REQUESTED.value,
    ]


def test_a_raw_image_body_is_refused_without_a_model_or_with_a_bad_option(
    service: RunningService,
) -> None:
    client = service.client
    raw = {"content": image_bytes(), "headers": {"content-type": "image/jpeg"}}
    no_model = assert_problem(client.post("/jobs", **raw), 422, "invalid-parameter")
    assert no_model["errors"][0]["parameter"] == "model"
    bad_option = {"model": "mobilenet-v2-imagenet-quant", "top_k": "0"}
    assert_problem(client.post("/jobs", params=bad_option, **raw), 400)
    not_an_image = client.post(
        "/jobs",
        params={"model": "mobilenet-v2-imagenet-quant"},
        content=b"not an image",
        headers={"content-type": "image/png"},
    )
    assert not_an_image.status_code in (415, 422), not_an_image.text
    # The query fields belong to a raw body: with a form they would be ignored silently.
    form = service.client.post(
        "/jobs",
        params={"top_k": "3"},
        files={"image": ("upload", image_bytes(), "image/jpeg")},
        data={"model": "mobilenet-v2-imagenet-quant"},
    )
    assert_problem(form, 422, "invalid-parameter")


def test_execute_without_image_in_one_call_is_refused(service: RunningService) -> None:
    # Without its image a job cannot execute: the spec allows only `execute: false` then.
    body = assert_problem(post_job(service.client, execute=True), 400)
    assert body["errors"][0]["pointer"] == "/execute"


def test_cancel_from_each_open_status_and_never_after(
    service: RunningService, jobs_topic: TopicReader, executor: Executor
) -> None:
    client = service.client
    new = new_job(client)
    queued = new_job(client, execute=True)
    running = new_job(client, execute=True)
    (request,) = requests_for(jobs_topic, running["id"], 1)
    executor.started(request)
    wait_status(client, running["id"], "RUNNING")

    for job in (new, queued, running):
        cancelled = client.post(f"/jobs/{job['id']}/cancellation", json={"reason": "enough"})
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["status"] == "CANCELLED"
        again = client.post(f"/jobs/{job['id']}/cancellation")
        assert assert_problem(again, 409, "illegal-transition")["job_status"] == "CANCELLED"
        no_result = client.get(f"/jobs/{job['id']}/result")
        assert assert_problem(no_result, 409, "job-not-done")["job_status"] == "CANCELLED"
        assert "retry-after" not in no_result.headers

    # A result arriving after the cancellation changes nothing: terminal is final.
    executor.completed(request)
    marker = new_job(client, execute=True)
    (marker_request,) = requests_for(jobs_topic, marker["id"], 1)
    executor.completed(marker_request)
    wait_status(client, marker["id"], "DONE")
    assert client.get(f"/jobs/{running['id']}").json()["status"] == "CANCELLED"

    cancelled_events = [
        validate_kafka_event(m.headers(), m.value())
        for m in jobs_topic.read(0)
        if headers_of(m)["ce_type"] == EventType.CANCELLED.value
    ]
    assert sorted(e["job_id"] for e in cancelled_events) == sorted(
        j["id"] for j in (new, queued, running)
    )
    assert {e["reason"] for e in cancelled_events} == {"enough"}


def test_delete_cancels_removes_the_image_and_reads_404(
    service: RunningService, jobs_topic: TopicReader
) -> None:
    client = service.client
    job = new_job(client, execute=True)
    deleted = client.delete(f"/jobs/{job['id']}")
    assert deleted.status_code == 204 and deleted.content == b""
    assert_problem(client.get(f"/jobs/{job['id']}"), 404, "job-not-found")
    assert_problem(client.get(f"/jobs/{job['id']}/image"), 404, "job-not-found")
    assert_problem(client.delete(f"/jobs/{job['id']}"), 404, "job-not-found")
    assert job["id"] not in [j["id"] for j in client.get("/jobs").json()["items"]]

    types = [headers_of(m)["ce_type"] for m in jobs_topic.read(4) if m.key() == job["id"].encode()]
    assert types == [
        EventType.CREATED.value,
        EventType.EXECUTION_REQUESTED.value,
        EventType.CANCELLED.value,
        EventType.DELETED.value,
    ]
    mongo, jobs = jobs_in_db(service.settings)
    try:
        # Once its last events are out, the relay purges the document and the bytes are gone.
        wait_for(lambda: jobs.count_documents({"_id": job["id"]}) == 0, 20, "purge")
        database = mongo[service.settings.mongodb_database]
        assert database["images.files"].count_documents({}) == 0
        assert database["images.chunks"].count_documents({}) == 0
    finally:
        mongo.close()


def test_models_are_listed_with_their_labels(service: RunningService) -> None:
    items = service.client.get("/models").json()["items"]
    by_name = {item["name"]: item for item in items}
    assert by_name["mobilenet-v2-imagenet-quant"]["label_count"] == 1001
    assert by_name["ssd-mobilenet-v1-coco-quant"]["task"] == "object_detection"
    detail = service.client.get("/models/ssd-mobilenet-v1-coco-quant").json()
    assert detail["labels"][0] == "person" and len(detail["labels"]) == 90
    assert_problem(service.client.get("/models/resnet-9000"), 404, "model-not-found")


def test_health_and_readiness(service: RunningService) -> None:
    import httpx

    assert httpx.get(service.url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(service.url + "/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"mongodb": True, "kafka": True}
    assert httpx.get(service.url + "/api/v1/inference/ui/").status_code == 200


def test_a_long_poll_answers_when_the_job_finishes(
    service: RunningService, jobs_topic: TopicReader, executor: Executor
) -> None:
    job = new_job(service.client, execute=True)
    waiting = service.client.get(f"/jobs/{job['id']}", params={"wait": 0.2}).json()
    assert waiting["status"] == "QUEUED"  # nothing happened: the job as it is after the wait

    (request,) = requests_for(jobs_topic, job["id"], 1)
    answer: dict[str, Any] = {}
    poll = threading.Thread(
        target=lambda: answer.update(
            service.client.get(f"/jobs/{job['id']}", params={"wait": 20}).json()
        )
    )
    poll.start()
    executor.started(request)
    executor.completed(request)
    poll.join(30)
    assert answer["status"] == "DONE"  # one request, answered once the result was folded
