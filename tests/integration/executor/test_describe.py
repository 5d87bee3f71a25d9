"""`describe` through the real Kafka and image store: one job, one completed event."""

from __future__ import annotations

import uuid

import pytest

from executor_service.settings import ExecutorSettings
from inference_common.kafka import ensure_topics
from tests.integration.executor.support import (
    ExecutorThread,
    event_type,
    events,
    produce,
    requests_for,
    topic_reader,
)
from tests.integration.service.harness import image_bytes, new_job, running, wait_status
from tests.unit.executor.builders import request_record

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def test_a_photo_is_described_in_one_job(isolated_env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXECUTOR_GROUP_ID", f"executor-{uuid.uuid4().hex[:8]}")
    monkeypatch.setenv("EXECUTOR_HTTP_PORT", "0")
    monkeypatch.setenv("EXECUTOR_WORKERS", "1")
    settings = ExecutorSettings()
    ensure_topics(settings)
    (request,) = requests_for(
        settings, "kite_and_cold.jpg", 1, model="describe-coco-imagenet", task="describe"
    )

    with ExecutorThread(settings):
        produce(settings, [request_record(request)])
        with topic_reader(settings, settings.topic_results) as reader:
            reader.read_until(lambda ms: any(event_type(m) == "completed" for m in ms))
            messages = reader.read_to_end()

    results = events(messages)  # each validated against openapi/asyncapi.yaml
    assert [kind for kind, _ in results] == ["started", "completed"]
    completed = results[1][1]
    assert (completed["job_id"], completed["model"]) == (request["job_id"], request["model"])
    result = completed["result"]
    assert result["task"] == "describe"
    assert result["description"] == "Seven people and three kites (scene: seashore)."
    assert {o["label"]: o["count"] for o in result["objects"]} == {"person": 7, "kite": 3}
    assert len(result["detection"]["detections"]) == 10
    assert result["detection"]["image_width"] == 1352  # boxes in the photo's own pixels
    assert result["scene"]["label"].startswith("seashore")


def test_a_describe_job_through_the_api(isolated_env, monkeypatch: pytest.MonkeyPatch) -> None:
    """The job service lists the composition, queues it with both options and answers its
    result, which it checks against openapi/inference-api.yaml (validate_responses)."""
    monkeypatch.setenv("EXECUTOR_GROUP_ID", f"executor-{uuid.uuid4().hex[:8]}")
    monkeypatch.setenv("EXECUTOR_HTTP_PORT", "0")
    monkeypatch.setenv("EXECUTOR_WORKERS", "1")
    settings = ExecutorSettings()

    with running() as service, ExecutorThread(settings):
        client = service.client
        models = {m["name"]: m for m in client.get("/models").json()["items"]}
        listed = models["describe-coco-imagenet"]
        assert (listed["task"], listed["label_count"]) == ("describe", None)
        job = new_job(
            client,
            image=image_bytes("kite_and_cold.jpg"),
            model="describe-coco-imagenet",
            execute=True,
        )
        assert job["task"] == "describe"
        assert job["options"] == {"top_k": 5, "score_threshold": 0.5}
        wait_status(client, job["id"], "DONE", timeout=90)
        answer = client.get(f"/jobs/{job['id']}/result")

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["task"], body["model"]) == ("describe", "describe-coco-imagenet")
    assert body["result"]["description"] == "Seven people and three kites (scene: seashore)."
