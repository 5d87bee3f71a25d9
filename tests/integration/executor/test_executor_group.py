"""Executor processes in one consumer group: sharing, SIGKILL, SIGTERM."""

from __future__ import annotations

import signal
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from inference_common.kafka import ensure_topics
from inference_common.settings import CommonSettings
from tests.integration.executor.support import (
    ExecutorProcess,
    events,
    job_ids,
    produce,
    requests_for,
    topic_reader,
    wait_for_group,
)
from tests.unit.executor.builders import request_record

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


@pytest.fixture
def group(settings: CommonSettings) -> str:
    ensure_topics(settings)  # 3 partitions (isolated_env), before anything produces
    return f"executor-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def spawn(tmp_path: Path, group: str) -> Iterator:
    started: list[ExecutorProcess] = []

    def start(name: str) -> ExecutorProcess:
        process = ExecutorProcess(tmp_path / f"{name}.log", EXECUTOR_GROUP_ID=group)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def completions_of(count: int):
    return lambda messages: len(job_ids(messages, "completed")) >= count


def test_three_processes_share_the_work(settings, group, spawn) -> None:
    executors = [spawn(f"executor-{n}") for n in range(3)]
    wait_for_group(settings, group, members=3)
    jobs = requests_for(settings, "cat.bmp", 30)
    produce(settings, [request_record(job) for job in jobs])

    with topic_reader(settings, settings.topic_results) as reader:
        messages = reader.read_until(completions_of(len(jobs)), timeout=120)

    wanted = {job["job_id"] for job in jobs}
    assert job_ids(messages, "completed") == wanted
    assert not job_ids(messages, "failed")
    by_executor = Counter(
        data["executor"] for kind, data in events(messages) if kind == "completed"
    )
    # Each of the three holds one of the three partitions.
    assert set(by_executor) == {e.executor_id for e in executors}
    for executor in executors:
        executor.signal(signal.SIGTERM)
    assert [e.wait(60) for e in executors] == [0, 0, 0]


def test_sigkill_loses_nothing(settings, group, spawn) -> None:
    first = spawn("killed")
    wait_for_group(settings, group, members=1)
    jobs = requests_for(
        settings,
        "kite_and_cold.jpg",
        80,
        model="ssd-mobilenet-v1-coco-quant",
        task="object_detection",
    )
    produce(settings, [request_record(job) for job in jobs])

    with topic_reader(settings, settings.topic_results) as reader:
        reader.read_until(completions_of(3), timeout=60)
        first.signal(signal.SIGKILL)
        assert first.wait(10) == -signal.SIGKILL
        done_before = job_ids(reader.messages, "completed")
        assert len(done_before) < len(jobs), "the kill came too late to interrupt anything"
        second = spawn("successor")
        messages = reader.read_until(completions_of(len(jobs)), timeout=150)

    assert job_ids(messages, "completed") == {job["job_id"] for job in jobs}
    finishers = {data["executor"] for kind, data in events(messages) if kind == "completed"}
    assert second.executor_id in finishers
    second.signal(signal.SIGTERM)
    assert second.wait(60) == 0


def test_sigterm_finishes_in_flight_work_commits_and_exits_zero(settings, group, spawn) -> None:
    first = spawn("terminated")
    wait_for_group(settings, group, members=1)
    jobs = requests_for(
        settings,
        "kite_and_cold.jpg",
        80,
        model="ssd-mobilenet-v1-coco-quant",
        task="object_detection",
    )
    produce(settings, [request_record(job) for job in jobs])

    with topic_reader(settings, settings.topic_results) as reader:
        reader.read_until(completions_of(3), timeout=60)
        first.signal(signal.SIGTERM)
        assert first.wait(60) == 0
        results = events(reader.read_to_end())
        started = {d["job_id"] for k, d in results if k == "started"}
        finished = {d["job_id"] for k, d in results if k in {"completed", "failed"}}
        # Everything it had taken on was finished and published before it exited.
        assert started == finished
        assert len(finished) < len(jobs), "SIGTERM came too late to leave work for another"
        second = spawn("successor")
        messages = reader.read_until(completions_of(len(jobs)), timeout=150)

    outcomes = events(messages)
    assert {d["job_id"] for k, d in outcomes if k == "completed"} == {j["job_id"] for j in jobs}
    # Its offsets were committed: the successor redid none of the first executor's jobs.
    redone = {
        d["job_id"] for k, d in outcomes if k == "started" and d["executor"] == second.executor_id
    }
    assert not redone & finished
    assert "stopped cleanly" in first.log()
    second.signal(signal.SIGTERM)
    assert second.wait(60) == 0
