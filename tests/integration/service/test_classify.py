"""The synchronous classify endpoints against the real Kafka, MongoDB API and an executor."""

from __future__ import annotations

import gzip
import io
import struct
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from inference_common.kafka import ensure_topics
from tests.integration.executor.support import ExecutorProcess, wait_for_group
from tests.integration.service.harness import (
    IMAGES,
    ROOT,
    Executor,
    RunningService,
    TopicReader,
    assert_problem,
    requests_for,
    running,
    service_settings,
    start_service,
    wait_status,
)

pytestmark = pytest.mark.integration

MNIST = ROOT / ".cache" / "assets" / "datasets" / "mnist"


def mnist_png(index: int) -> tuple[bytes, int]:
    """Test digit `index` of the MNIST test set as a PNG, with its label."""
    images = gzip.decompress((MNIST / "t10k-images-idx3-ubyte.gz").read_bytes())
    labels = gzip.decompress((MNIST / "t10k-labels-idx1-ubyte.gz").read_bytes())
    _magic, _count, rows, cols = struct.unpack(">IIII", images[:16])
    start = 16 + index * rows * cols
    digit = Image.frombytes("L", (cols, rows), images[start : start + rows * cols])
    buffer = io.BytesIO()
    digit.save(buffer, format="PNG")
    return buffer.getvalue(), labels[8 + index]


@pytest.fixture
def platform(isolated_env: dict[str, str], tmp_path: Path) -> Iterator[RunningService]:
    """The job service and one real executor on the test's topics and database."""
    settings = service_settings(classify_timeout_seconds=30.0)
    ensure_topics(settings)
    group = f"test-executor-{uuid.uuid4().hex[:8]}"
    executor = ExecutorProcess(tmp_path / "executor.log", EXECUTOR_GROUP_ID=group)
    service = start_service(settings)
    try:
        wait_for_group(settings, group, 1, timeout=90)
        yield service
    finally:
        service.stop()
        executor.stop()


@pytest.fixture
def quick_timeout(isolated_env: dict[str, str]) -> Iterator[RunningService]:
    """The job service alone: nothing executes, so every classify request times out."""
    with running(classify_timeout_seconds=1.0) as service:
        yield service


def test_a_digit_is_classified_from_the_raw_body(platform: RunningService) -> None:
    for index in range(3):
        png, label = mnist_png(index)
        response = platform.client.post(
            "/mnist/classify", content=png, headers={"Content-Type": "image/png"}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["digit"] == label
        assert body["model"] == "mnist-lstm-tflm-float32"
        assert len(body["probabilities"]) == 10
        assert max(body["probabilities"]) == body["probabilities"][label]
        # It was a job like any other.
        job = platform.client.get(f"/jobs/{body['job_id']}").json()
        assert job["status"] == "DONE" and job["model"] == body["model"]


def test_a_digit_is_classified_from_a_multipart_form_with_another_model(
    platform: RunningService,
) -> None:
    png, label = mnist_png(3)
    response = platform.client.post(
        "/mnist/classify",
        params={"model": "mnist-lstm-tflm-int8"},
        files={"image": ("digit.png", png, "image/png")},
    )
    assert response.status_code == 200, response.text
    assert response.json()["digit"] == label
    assert response.json()["model"] == "mnist-lstm-tflm-int8"


def test_the_generic_form_answers_the_top_classes(platform: RunningService) -> None:
    response = platform.client.post(
        "/models/mobilenet-v2-imagenet-quant/classify",
        params={"top_k": 3},
        content=(IMAGES / "parrot.jpg").read_bytes(),
        headers={"Content-Type": "image/jpeg"},
    )
    assert response.status_code == 200, response.text
    classes = response.json()["classes"]
    assert len(classes) == 3 and classes[0]["label"] == "macaw"


@pytest.mark.parametrize(
    ("content", "content_type", "params", "slug"),
    [
        (b"this is not an image", "application/octet-stream", {}, "unsupported-image-type"),
        (b"", "image/png", {}, "empty-image"),
        ("truncated", "image/png", {}, "corrupt-image"),
        (None, "image/png", {"model": "no-such-model"}, "unknown-model"),
        (None, "image/png", {"model": "mobilenet-v2-imagenet-quant"}, "unknown-model"),
    ],
)
def test_invalid_input_is_404(
    quick_timeout: RunningService,
    content: bytes | str | None,
    content_type: str,
    params: dict[str, str],
    slug: str,
) -> None:
    png = mnist_png(0)[0]
    body = png if content is None else png[: len(png) // 2] if content == "truncated" else content
    assert isinstance(body, bytes)
    response = quick_timeout.client.post(
        "/mnist/classify", content=body, params=params, headers={"Content-Type": content_type}
    )
    assert_problem(response, 404, slug)
    assert quick_timeout.client.get("/jobs").json()["items"] == []


def test_a_form_without_an_image_and_an_oversized_body_are_404(
    quick_timeout: RunningService,
) -> None:
    client = quick_timeout.client
    empty_form = client.post(
        "/mnist/classify",
        content=b"--x--\r\n",
        headers={"Content-Type": "multipart/form-data; boundary=x"},
    )
    assert_problem(empty_form, 404, "missing-image")
    other_file = client.post("/mnist/classify", files={"other": ("x", b"1")})
    assert_problem(other_file, 404, "missing-image")
    # A multipart body without its boundary is a malformed request rather than an input.
    no_boundary = {"Content-Type": "multipart/form-data"}
    assert_problem(client.post("/mnist/classify", content=b"x", headers=no_boundary), 400)
    limit = quick_timeout.settings.max_image_bytes
    huge = quick_timeout.client.post(
        "/mnist/classify",
        content=b"\0" * (limit + 1),
        headers={"Content-Type": "application/octet-stream"},
    )
    assert_problem(huge, 404, "image-too-large")
    too_huge = quick_timeout.client.post(
        "/mnist/classify",
        content=b"\0" * (limit + 200_000),
        headers={"Content-Type": "application/octet-stream"},
    )
    assert_problem(too_huge, 404, "request-too-large")


def test_the_generic_form_keeps_the_usual_status_codes(quick_timeout: RunningService) -> None:
    client = quick_timeout.client
    garbage = {"content": b"not an image", "headers": {"Content-Type": "image/png"}}
    assert_problem(client.post("/models/no-such-model/classify", **garbage), 404)
    assert_problem(client.post("/models/mnist-lstm-tflm-int8/classify", **garbage), 415)
    detector = "/models/ssd-mobilenet-v1-coco-quant/classify"
    png = {"content": mnist_png(0)[0], "headers": {"Content-Type": "image/png"}}
    assert_problem(client.post(detector, **png), 422, "not-a-classifier")


def test_a_job_that_does_not_finish_in_time_is_504_and_goes_on(
    quick_timeout: RunningService,
) -> None:
    response = quick_timeout.client.post(
        "/mnist/classify", content=mnist_png(0)[0], headers={"Content-Type": "image/png"}
    )
    problem = assert_problem(response, 504, "classify-timeout")
    job = quick_timeout.client.get(f"/jobs/{problem['job_id']}").json()
    assert job["status"] == "QUEUED"


def test_a_failed_job_is_502_with_its_error(isolated_env: dict[str, str]) -> None:
    """The harness plays the executor: the answer comes as soon as the failure is folded."""
    settings = service_settings(classify_timeout_seconds=30.0)
    ensure_topics(settings)
    service = start_service(settings)
    reader = TopicReader(settings, settings.topic_jobs)
    answers: list[httpx.Response] = []
    try:
        request = threading.Thread(
            target=lambda: answers.append(
                service.client.post(
                    "/mnist/classify",
                    content=mnist_png(0)[0],
                    headers={"Content-Type": "image/png"},
                )
            )
        )
        request.start()
        job_id = _only_job(service)
        execution = requests_for(reader, job_id, 1)[0]
        Executor(settings).failed(execution, "model_error", retryable=False)
        request.join(30)
        assert answers, "the classify request did not answer"
        problem = assert_problem(answers[0], 502, "job-failed")
        assert problem["job_id"] == job_id
        assert problem["error"]["code"] == "model_error"
        wait_status(service.client, job_id, "FAILED")
    finally:
        reader.close()
        service.stop()


def _only_job(service: RunningService) -> str:
    found: list[dict[str, Any]] = []

    def listed() -> bool:
        found[:] = service.client.get("/jobs").json()["items"]
        return bool(found)

    from tests.integration.service.harness import wait_for

    wait_for(listed, 20, "the classify job")
    return str(found[0]["id"])
