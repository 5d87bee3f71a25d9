"""Jobs end to end with IMAGE_STORE=s3: images put in the S3-compatible server as the job
service puts them, an executor reads them by their `s3://` claim checks, results on Kafka."""

from __future__ import annotations

import uuid

import pytest

from executor_service.settings import ExecutorSettings
from inference_common.kafka import ensure_topics
from tests.integration.executor.support import (
    IMAGES,
    ExecutorThread,
    event_type,
    events,
    produce,
    store_image,
    topic_reader,
)
from tests.integration.s3 import S3Server
from tests.unit.executor.builders import execution_requested, request_record

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture
def executor_settings(
    isolated_env: dict[str, str], s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> ExecutorSettings:
    prefix = f"e2e-{uuid.uuid4().hex[:8]}/"
    for name, value in {
        "IMAGE_STORE": "s3",
        "IMAGE_STORE_S3_ENDPOINT": s3_server.endpoint,
        "IMAGE_STORE_S3_BUCKET": s3_server.bucket,
        "IMAGE_STORE_S3_PREFIX": prefix,
        "TOPIC_PARTITIONS": "1",
        "EXECUTOR_GROUP_ID": f"executor-{uuid.uuid4().hex[:8]}",
        "EXECUTOR_HTTP_PORT": "0",
        "EXECUTOR_WORKERS": "1",
    }.items():
        monkeypatch.setenv(name, value)
    settings = ExecutorSettings()
    ensure_topics(settings)
    return settings


def test_jobs_whose_images_are_on_s3_complete_and_a_deleted_one_fails_as_missing(
    executor_settings: ExecutorSettings, s3_server: S3Server
) -> None:
    settings = executor_settings
    parrot = execution_requested(store_image(settings, (IMAGES / "parrot.jpg").read_bytes()))
    gone_ref = store_image(settings, (IMAGES / "cat.bmp").read_bytes())
    gone = execution_requested(gone_ref)
    assert parrot["image"]["uri"].startswith(
        f"s3://{s3_server.bucket}/{settings.image_store_s3_prefix}"
    )
    # The job was deleted (and its image with it) before an executor got to it.
    name = gone_ref["uri"].removeprefix(f"s3://{s3_server.bucket}/")
    s3_server.client().delete_object(Bucket=s3_server.bucket, Key=name)

    with ExecutorThread(settings):
        produce(settings, [request_record(parrot), request_record(gone)])
        with topic_reader(settings, settings.topic_results) as reader:
            messages = reader.read_until(
                lambda ms: sum(event_type(m) in {"completed", "failed"} for m in ms) >= 2
            )

    outcome = {data["job_id"]: (kind, data) for kind, data in events(messages) if kind != "started"}
    kind, data = outcome[parrot["job_id"]]
    assert kind == "completed" and data["result"]["classes"][0]["label"] == "macaw"
    kind, data = outcome[gone["job_id"]]
    assert kind == "failed" and data["error"]["code"] == "image_missing"
    assert data["error"]["retryable"] is False
