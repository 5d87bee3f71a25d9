"""One execution end to end in-process: events per the contract, failures per code."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from executor_service.errors import ErrorCode, JobFailure
from executor_service.execution import ExecutionContext, run_execution
from executor_service.jobs import parse_execution, parse_request
from executor_service.metrics import Metrics
from executor_service.models import ModelRegistry
from executor_service.pipeline import Limits
from inference_common.events import KafkaRecord, from_record
from inference_common.tracecontext import new_traceparent, trace_id
from tests.contracts import event_schemas, validate_kafka_event
from tests.unit.executor.builders import execution_requested, image_ref, request_record
from tests.unit.executor.conftest import image_bytes

EXECUTOR = "test-host:1234"


class FakeImages:
    def __init__(self, images: dict[str, bytes]) -> None:
        self.images = images

    def read(self, uri: str, max_bytes: int) -> bytes:
        if uri not in self.images:
            raise JobFailure(ErrorCode.IMAGE_MISSING, f"no image {uri}")
        return self.images[uri]


def run(registry: ModelRegistry, data: dict, images: dict[str, bytes], traceparent=None):
    record = request_record(data, traceparent)
    envelope = from_record(record.value, record.headers, record.key)
    published: list[KafkaRecord] = []
    metrics = Metrics()
    context = ExecutionContext(
        executor=EXECUTOR,
        images=FakeImages(images),
        limits=Limits(max_image_bytes=10_000_000, max_image_pixels=50_000_000),
        metrics=metrics,
        schemas=event_schemas(),
    )
    execution = parse_execution(data, event_schemas())
    ok = run_execution(envelope, execution, registry, context, published.append)
    events = [
        validate_kafka_event(r.headers, r.value) | {"_headers": dict(r.headers)} for r in published
    ]
    return ok, events, metrics


def stored(name: str) -> tuple[dict, dict[str, bytes]]:
    data = image_bytes(name)
    ref = image_ref(data)
    return ref, {ref["uri"]: data}


def test_classification_publishes_started_then_completed(registry: ModelRegistry) -> None:
    ref, images = stored("parrot.jpg")
    data = execution_requested(ref, options={"top_k": 3})
    parent = new_traceparent()

    ok, events, metrics = run(registry, data, images, parent)

    assert ok
    started, completed = events
    assert started["_headers"]["ce_type"] == b"io.cvinference.job.started.v1"
    assert completed["_headers"]["ce_type"] == b"io.cvinference.job.completed.v1"
    for event in events:
        assert event["_headers"]["ce_source"] == b"/executor-service"
        assert {k: event[k] for k in ("job_id", "execution_id", "attempt")} == {
            k: data[k] for k in ("job_id", "execution_id", "attempt")
        }
        child = event["_headers"]["ce_traceparent"].decode()
        assert trace_id(child) == trace_id(parent) and child != parent
    assert started["executor"] == completed["executor"] == EXECUTOR
    assert completed["model"] == "mobilenet-v2-imagenet-quant"
    classes = completed["result"]["classes"]
    assert len(classes) == 3 and classes[0]["label"] == "macaw"
    assert {"fetch_ms", "preprocess_ms", "inference_ms", "total_ms"} <= set(completed["timings"])
    assert metrics.registry.get_sample_value("executor_jobs_total", {"outcome": "completed"}) == 1


def test_detection_honours_the_score_threshold(registry: ModelRegistry) -> None:
    ref, images = stored("kite_and_cold.jpg")
    base = {"model": "ssd-mobilenet-v1-coco-quant", "task": "object_detection"}

    _, strict, _ = run(
        registry, execution_requested(ref, **base, options={"score_threshold": 0.7}), images
    )
    _, default, _ = run(registry, execution_requested(ref, **base), images)

    strict_found = strict[1]["result"]["detections"]
    default_found = default[1]["result"]["detections"]
    assert all(d["score"] >= 0.7 for d in strict_found)
    assert all(d["score"] >= 0.5 for d in default_found)  # the manifest's default
    assert len(default_found) > len(strict_found)
    assert default[1]["result"]["image_width"] == 1352


def failure_of(registry: ModelRegistry, data: dict, images: dict[str, bytes]) -> dict:
    ok, events, metrics = run(registry, data, images)
    assert not ok
    started, failed = events
    assert started["_headers"]["ce_type"] == b"io.cvinference.job.started.v1"
    assert failed["_headers"]["ce_type"] == b"io.cvinference.job.failed.v1"
    assert failed["failed_by"] == EXECUTOR
    code = failed["error"]["code"]
    assert metrics.registry.get_sample_value("executor_job_failures_total", {"code": code}) == 1
    return failed["error"]


def test_unknown_model(registry: ModelRegistry) -> None:
    ref, images = stored("cat.bmp")
    error = failure_of(registry, execution_requested(ref, model="no-such-model"), images)
    assert (error["code"], error["retryable"]) == ("unknown_model", False)


def test_missing_image(registry: ModelRegistry) -> None:
    ref, _ = stored("cat.bmp")
    error = failure_of(registry, execution_requested(ref), {})
    assert (error["code"], error["retryable"]) == ("image_missing", False)


def test_checksum_mismatch(registry: ModelRegistry) -> None:
    ref, images = stored("cat.bmp")
    ref["sha256"] = "0" * 64
    error = failure_of(registry, execution_requested(ref), images)
    assert (error["code"], error["retryable"]) == ("image_checksum_mismatch", False)


def test_corrupt_image(registry: ModelRegistry) -> None:
    garbage = b"\xff\xd8\xff\xe0 definitely not a JPEG"
    ref = image_ref(garbage)
    error = failure_of(registry, execution_requested(ref), {ref["uri"]: garbage})
    assert (error["code"], error["retryable"]) == ("image_unreadable", False)


def test_deadline_already_passed_is_retryable(registry: ModelRegistry) -> None:
    ref, images = stored("cat.bmp")
    past = datetime.now(UTC) - timedelta(seconds=1)
    error = failure_of(registry, execution_requested(ref, deadline=past), images)
    assert (error["code"], error["retryable"]) == ("deadline_exceeded", True)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"task": "object_detection"}, "does classification"),
        ({"options": {"top_k": 0}}, "data.options.top_k must be bigger than or equal to 1"),
        ({"options": {"colour": "blue"}}, "data.options must not contain {'colour'}"),
        ({"image": {"uri": "s3://bucket/x"}}, "data.image must contain"),
        ({"deadline": "tomorrow"}, "data.deadline must be date-time"),
        ({"deadline": "2030-19-01T00:00:00Z"}, "data.deadline must be date-time"),
        ({"model": 7}, "data.model must be string"),
    ],
)
def test_invalid_requests(registry: ModelRegistry, change: dict, message: str) -> None:
    ref, images = stored("cat.bmp")
    data = {**execution_requested(ref), **change}
    error = failure_of(registry, data, images)
    assert error["code"] == "invalid_request"
    assert message in error["message"]


def test_ids_are_required_for_any_result() -> None:
    with pytest.raises(ValueError, match=r"data must contain \['execution_id'\]"):
        parse_execution({"job_id": "a" * 32, "attempt": 1}, event_schemas())
    with pytest.raises(ValueError, match=r"data\.attempt must be bigger than or equal to 1"):
        parse_execution(
            {"job_id": "a" * 32, "execution_id": "b" * 32, "attempt": 0}, event_schemas()
        )


def test_the_request_is_read_as_the_contract_types_it() -> None:
    data = execution_requested(image_ref(b"abc"), options={"top_k": 3})
    request = parse_request(data, data["job_id"], event_schemas())
    assert request.ids() == {k: data[k] for k in ("job_id", "execution_id", "attempt")}
    assert (request.options.top_k, request.options.score_threshold) == (3, None)
    assert request.image.sha256 == data["image"]["sha256"]
    assert request.deadline.tzinfo is not None
    with pytest.raises(JobFailure, match="differs from the event subject"):
        parse_request(data, "0" * 32, event_schemas())
