"""The executor's consumer lag on /metrics, against the real Kafka: a backlog shows, then drains."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from executor_service.settings import ExecutorSettings
from inference_common.kafka import ensure_topics
from tests.integration.executor.support import (
    ExecutorThread,
    event_type,
    produce,
    requests_for,
    topic_reader,
)
from tests.unit.executor.builders import request_record

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

JOBS = 100


def lag_by_partition(base: str) -> dict[str, float]:
    text = httpx.get(f"{base}/metrics").text
    return {
        sample.labels["partition"]: sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "inference_executor_consumer_lag"
        for sample in family.samples
    }


def test_a_backlog_shows_as_lag_and_drains_to_zero(
    isolated_env, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXECUTOR_GROUP_ID", f"executor-{uuid.uuid4().hex[:8]}")
    monkeypatch.setenv("EXECUTOR_HTTP_PORT", "0")
    monkeypatch.setenv("EXECUTOR_WORKERS", "1")
    monkeypatch.setenv("EXECUTOR_LAG_INTERVAL_MS", "200")
    settings = ExecutorSettings()
    ensure_topics(settings)
    # Detection of a 1.4 MB photo on one worker: tens of milliseconds a job, so the backlog
    # lasts seconds, many times the statistics interval.
    requests = requests_for(
        settings,
        "kite_and_cold.jpg",
        JOBS,
        model="ssd-mobilenet-v1-coco-quant",
        task="object_detection",
    )
    produce(settings, [request_record(data) for data in requests])  # before the executor runs

    samples: list[dict[str, float]] = []
    with ExecutorThread(settings) as running:
        base = f"http://127.0.0.1:{running.executor.health.port}"
        with topic_reader(settings, settings.topic_results) as reader:

            def sampled_until_all_completed(messages: list) -> bool:
                samples.append(lag_by_partition(base))
                return sum(event_type(m) == "completed" for m in messages) >= JOBS

            reader.read_until(sampled_until_all_completed, timeout=120)
        deadline = time.monotonic() + 30
        while (lags := lag_by_partition(base)) != {"0": 0, "1": 0, "2": 0}:
            assert time.monotonic() < deadline, f"lag did not drain: {lags}"
            time.sleep(0.1)

    totals = [sum(sample.values()) for sample in samples]
    assert max(totals) > 0, "the backlog never showed as lag"
    assert max(totals) <= JOBS  # the topic holds nothing but these requests
    assert {partition for sample in samples for partition in sample} == {"0", "1", "2"}
