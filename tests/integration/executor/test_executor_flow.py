"""One executor against the real Kafka and FerretDB: results, poison, skipping."""

from __future__ import annotations

import hashlib
import json
import os
import uuid

import httpx
import pytest

from executor_service.settings import ExecutorSettings
from inference_common.events import EventType, new_event, to_record
from inference_common.kafka import ensure_topics
from inference_common.tracecontext import new_traceparent, trace_id
from tests.integration.executor.support import (
    IMAGES,
    ExecutorThread,
    event_type,
    events,
    produce,
    store_image,
    topic_reader,
)
from tests.malformed_images import corpus
from tests.unit.executor.builders import execution_requested, new_id, request_record

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture
def executor_settings(isolated_env, monkeypatch: pytest.MonkeyPatch) -> ExecutorSettings:
    # One partition: the test's messages reach the executor in the order they were sent.
    monkeypatch.setenv("TOPIC_PARTITIONS", "1")
    monkeypatch.setenv("EXECUTOR_GROUP_ID", f"executor-{uuid.uuid4().hex[:8]}")
    monkeypatch.setenv("EXECUTOR_HTTP_PORT", "0")
    monkeypatch.setenv("EXECUTOR_WORKERS", "2")
    settings = ExecutorSettings()
    ensure_topics(settings)  # before anything produces: auto-creation would use 6 partitions
    return settings


def completed_or_failed(job_count: int):
    def done(messages) -> bool:
        return sum(event_type(m) in {"completed", "failed"} for m in messages) >= job_count

    return done


def test_jobs_complete_with_results_per_contract(executor_settings: ExecutorSettings) -> None:
    settings = executor_settings
    parrot = execution_requested(store_image(settings, (IMAGES / "parrot.jpg").read_bytes()))
    kites = execution_requested(
        store_image(settings, (IMAGES / "kite_and_cold.jpg").read_bytes()),
        model="ssd-mobilenet-v1-coco-quant",
        task="object_detection",
    )
    parent = new_traceparent()

    with ExecutorThread(settings) as running:
        produce(settings, [request_record(parrot, parent), request_record(kites)])
        with topic_reader(settings, settings.topic_results) as reader:
            messages = reader.read_until(completed_or_failed(2))
        port = running.executor.health.port
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz")
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text

    results = events(messages)
    by_job = {
        job: [(kind, data) for kind, data in results if data["job_id"] == job]
        for job in (parrot["job_id"], kites["job_id"])
    }
    for job, job_events in by_job.items():
        assert [kind for kind, _ in job_events] == ["started", "completed"], job
    assert all(
        m.key().decode() == data["job_id"] for m, (_, data) in zip(messages, results, strict=True)
    )
    completed = {job: job_events[1][1] for job, job_events in by_job.items()}
    assert completed[parrot["job_id"]]["result"]["classes"][0]["label"] == "macaw"
    labels = [d["label"] for d in completed[kites["job_id"]]["result"]["detections"]]
    assert labels.count("person") >= 5 and labels.count("kite") >= 2
    assert completed[parrot["job_id"]]["execution_id"] == parrot["execution_id"]
    host_pid = completed[parrot["job_id"]]["executor"]
    assert host_pid == running.executor.executor and host_pid.endswith(f":{os.getpid()}")
    parrot_message = next(
        m for m in messages if m.key() == parrot["job_id"].encode() and event_type(m) == "completed"
    )
    traceparent = dict(parrot_message.headers())["ce_traceparent"].decode()
    assert trace_id(traceparent) == trace_id(parent)
    assert ready.status_code == 200 and ready.json()["kafka_reachable"] is True
    assert 'executor_jobs_total{outcome="completed"} 2.0' in metrics
    assert 'executor_inference_seconds_count{model="ssd-mobilenet-v1-coco-quant"} 1.0' in metrics
    assert running.exit_code == 0


def foreign_event(event_type_name: str) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """A well-formed CloudEvent of a type this platform does not have."""
    job = new_id()
    record = to_record(
        new_event(EventType.DELETED, "/inference-service", job, {"job_id": job, "deleted_at": "x"})
    )
    headers = [(k, event_type_name.encode() if k == "ce_type" else v) for k, v in record.headers]
    return record.key, record.value, headers


def test_poison_never_stops_the_consumer(executor_settings: ExecutorSettings) -> None:
    settings = executor_settings
    cat = (IMAGES / "cat.bmp").read_bytes()
    good_ref = store_image(settings, cat)
    corrupt = b"\xff\xd8\xff\xe0" + b"\x00" * 100
    corrupt_ref = store_image(settings, corrupt)
    missing_ref = {**good_ref, "uri": "blob://images/" + "0" * 24}
    tampered_ref = {**good_ref, "sha256": hashlib.sha256(b"other").hexdigest()}
    garbage = (b"garbage-key", b"\x00\xffnot json at all", [("x-origin", b"fuzzer")])
    unknown_type = foreign_event("io.cvinference.job.exploded.v1")
    no_ids = execution_requested(good_ref)
    no_ids["execution_id"] = "not-hex"
    no_ids_record = request_record(no_ids)
    originals = [
        garbage,
        unknown_type,
        (no_ids_record.key, no_ids_record.value, no_ids_record.headers),
    ]
    failing = {
        "unknown_model": execution_requested(good_ref, model="yolo-v99"),
        "image_missing": execution_requested(missing_ref),
        "image_checksum_mismatch": execution_requested(tampered_ref),
        "image_unreadable": execution_requested(corrupt_ref),
    }
    good = execution_requested(good_ref)

    with ExecutorThread(settings):
        produce(
            settings,
            [
                *originals,
                *(request_record(data) for data in failing.values()),
                request_record(good),
            ],
        )
        with topic_reader(settings, settings.topic_results) as results:
            result_messages = results.read_until(completed_or_failed(len(failing) + 1))
        with topic_reader(settings, settings.topic_dead_letter) as dead:
            dead_messages = dead.read_until(lambda m: len(m) >= 3)

    outcomes = {data["job_id"]: (kind, data) for kind, data in events(result_messages)}
    assert outcomes[good["job_id"]][0] == "completed"
    for code, data in failing.items():
        kind, failed = outcomes[data["job_id"]]
        assert kind == "failed"
        assert failed["error"]["code"] == code
        assert failed["error"]["retryable"] is False
        assert failed["error"]["message"]
    assert no_ids["job_id"] not in outcomes

    # Set aside byte for byte, with the original headers first and where it came from after.
    for offset, (message, (key, value, headers)) in enumerate(
        zip(dead_messages, originals, strict=True)
    ):
        dlq = dict(message.headers())
        assert (message.key(), message.value()) == (key, value)
        assert [h for h in message.headers() if not h[0].startswith("dlq_")] == headers
        assert dlq["dlq_topic"].decode() == settings.topic_jobs
        assert (dlq["dlq_partition"], dlq["dlq_offset"]) == (b"0", str(offset).encode())
        assert dlq["dlq_error"] and dlq["dlq_time"]
    assert b"unknown event type" in dict(dead_messages[1].headers())["dlq_error"]
    assert json.loads(dead_messages[2].value())["execution_id"] == "not-hex"


def test_execution_cancelled_in_the_same_batch_is_skipped(
    executor_settings: ExecutorSettings,
) -> None:
    settings = executor_settings
    ref = store_image(settings, (IMAGES / "cat.bmp").read_bytes())
    doomed, good = execution_requested(ref), execution_requested(ref)
    cancel = new_event(
        EventType.CANCELLED,
        "/inference-service",
        doomed["job_id"],
        {"job_id": doomed["job_id"], "reason": "user", "cancelled_at": "2026-11-23T12:00:00Z"},
    )
    # Sent before the executor starts, so its first fetch holds all three; with one worker
    # and one results partition, events of the doomed job would come before the good job's.
    produce(settings, [request_record(doomed), to_record(cancel), request_record(good)])

    one_worker = settings.model_copy(update={"executor_workers": 1})
    with ExecutorThread(one_worker), topic_reader(settings, settings.topic_results) as reader:
        messages = reader.read_until(completed_or_failed(1))

    assert {data["job_id"] for _, data in events(messages)} == {good["job_id"]}


def test_a_purged_event_is_ignored_neither_run_nor_dead_lettered(
    executor_settings: ExecutorSettings,
) -> None:
    settings = executor_settings
    good = execution_requested(store_image(settings, (IMAGES / "cat.bmp").read_bytes()))
    job = good["job_id"]  # its partition: handled before the request that follows it
    removed = {"job_id": job, "removed": ["image"], "purged_at": "2026-11-23T12:00:00Z"}
    purged = new_event(EventType.PURGED, "/inference-service", job, removed)
    produce(settings, [to_record(purged), request_record(good)])

    with ExecutorThread(settings), topic_reader(settings, settings.topic_results) as reader:
        messages = reader.read_until(completed_or_failed(1))
        with topic_reader(settings, settings.topic_dead_letter) as dead:
            assert dead.read_to_end() == []

    assert {data["job_id"] for _, data in events(messages)} == {good["job_id"]}


def test_malformed_images_fail_cleanly_or_classify(executor_settings: ExecutorSettings) -> None:
    """The corpus stored directly, past the API's checks: each job fails with a clear reason
    or is classified right, and the executor goes on to the next."""
    settings = executor_settings
    requests = [
        (sample, execution_requested(store_image(settings, sample.data), model=sample.model))
        for sample in corpus()
    ]
    last = execution_requested(store_image(settings, (IMAGES / "parrot.jpg").read_bytes()))

    with ExecutorThread(settings) as running:
        produce(settings, [*(request_record(data) for _, data in requests), request_record(last)])
        with topic_reader(settings, settings.topic_results) as reader:
            messages = reader.read_until(completed_or_failed(len(requests) + 1), timeout=120)

    outcomes = {
        data["job_id"]: (kind, data) for kind, data in events(messages) if kind != "started"
    }
    wrong = []
    for sample, data in requests:
        kind, outcome = outcomes[data["job_id"]]
        if sample.fails_with is not None:
            error = outcome.get("error", {})
            if kind != "failed" or error.get("code") != sample.fails_with or not error["message"]:
                wrong.append(f"{sample.name}: {kind} {outcome.get('error') or outcome['result']}")
        elif kind != "completed" or outcome["result"]["classes"][0]["label"] != sample.label:
            wrong.append(f"{sample.name}: {kind} {outcome.get('error') or outcome['result']}")
    assert wrong == []
    assert outcomes[last["job_id"]][0] == "completed"
    assert running.exit_code == 0  # it stopped cleanly when asked, not before


def test_huge_and_headerless_messages_are_set_aside(executor_settings: ExecutorSettings) -> None:
    settings = executor_settings
    good = execution_requested(store_image(settings, (IMAGES / "cat.bmp").read_bytes()))
    record = request_record(good)
    # Just under the producer's 1,000,000-byte limit and incompressible: the copy for the
    # dead-letter topic, with its error headers on top, would be over it.
    huge = (b"huge", os.urandom(999_900), [("x-origin", b"fuzzer")])
    headerless = (record.key, record.value, [])  # the data of a real request, no ce_* headers
    with ExecutorThread(settings) as running:
        produce(settings, [huge, headerless, record])
        with topic_reader(settings, settings.topic_results) as results:
            result_messages = results.read_until(completed_or_failed(1))
        with topic_reader(settings, settings.topic_dead_letter) as dead:
            dead_messages = dead.read_until(lambda m: len(m) >= 2)
        assert running.executor.service.fatal is None
    assert [kind for kind, _ in events(result_messages)] == ["started", "completed"]
    by_key = {message.key(): message for message in dead_messages}
    assert set(by_key) == {b"huge", record.key}
    assert b"not a CloudEvent" in dict(by_key[record.key].headers())["dlq_error"]
    assert by_key[record.key].value() == record.value
    set_aside = dict(by_key[b"huge"].headers())
    assert set_aside["dlq_error"]
    assert int(set_aside["dlq_value_bytes"]) == 999_900
    assert len(by_key[b"huge"].value()) < 999_900  # cut down to fit, and marked so
