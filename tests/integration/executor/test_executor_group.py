"""Executor processes in one consumer group: sharing, SIGKILL, SIGTERM."""

from __future__ import annotations

import signal
import uuid
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


def test_executors_share_the_partitions_up_to_their_count(settings, group, spawn) -> None:
    """Scale-out by joining the group: with P = 3 partitions, 2 executors split them and
    both work; 4 executors leave one idle. Jobs spread over every partition by job id, each
    job is done by the owner of its partition, and every job completes once in effect."""
    first = [spawn(f"executor-{n}") for n in range(2)]
    shares = wait_for_group(settings, group, members=2)
    assert sorted(len(shares[e.executor_id]) for e in first) == [1, 2]
    batch = requests_for(settings, "cat.bmp", 30)
    done = run_batch(settings, batch, shares)
    assert set(done.values()) == {e.executor_id for e in first}

    later = [spawn(f"executor-{n}") for n in range(2, 4)]
    shares = wait_for_group(settings, group, members=4, holding=3)
    assert sorted(len(share) for share in shares.values()) == [0, 1, 1, 1]
    (idle,) = (executor for executor in first + later if not shares[executor.executor_id])
    batch = requests_for(settings, "cat.bmp", 30)
    done = run_batch(settings, batch, shares)
    assert set(done.values()) == {e.executor_id for e in first + later} - {idle.executor_id}

    for executor in first + later:
        executor.signal(signal.SIGTERM)
    assert [e.wait(60) for e in first + later] == [0, 0, 0, 0]


def run_batch(
    settings: CommonSettings, jobs: list[dict], shares: dict[str, set[int]]
) -> dict[str, str]:
    """Produce `jobs`, wait for all of them; job id -> the executor that completed it, checked
    to be the owner of the partition its request was on."""
    wanted = {job["job_id"] for job in jobs}
    with topic_reader(settings, settings.topic_jobs) as requests:
        already = len(requests.read_to_end())
        produce(settings, [request_record(job) for job in jobs])
        requests.read_until(lambda messages: len(messages) >= already + len(jobs), timeout=30)
        partition_of = {m.key().decode(): m.partition() for m in requests.messages}
    # Keyed by job id, the requests land on every partition (30 jobs on 3: all but certain).
    assert {partition_of[job_id] for job_id in wanted} == set(range(settings.topic_partitions))
    with topic_reader(settings, settings.topic_results) as reader:
        messages = reader.read_until(lambda m: wanted <= job_ids(m, "completed"), timeout=120)
    assert not job_ids(messages, "failed")
    finisher: dict[str, set[str]] = {}
    result_partitions: dict[str, set[int]] = {}
    for message, (kind, data) in zip(messages, events(messages), strict=True):
        result_partitions.setdefault(data["job_id"], set()).add(message.partition())
        if kind == "completed" and data["job_id"] in wanted:
            finisher.setdefault(data["job_id"], set()).add(data["executor"])
    owner = {p: member for member, share in shares.items() for p in share}
    for job_id in wanted:
        # Once in effect: one executor, the partition's owner (a redelivery would be its own).
        assert finisher[job_id] == {owner[partition_of[job_id]]}
        # A job's results share one partition too: its events stay in order.
        assert len(result_partitions[job_id]) == 1
    return {job_id: next(iter(finisher[job_id])) for job_id in wanted}


def one_executor_with_a_backlog(settings, group, spawn, name: str):
    """One executor holding every partition, then 80 detection jobs for it (slow enough to
    be interrupted mid-way)."""
    executor = spawn(name)
    wait_for_group(settings, group, members=1)
    jobs = requests_for(
        settings,
        "kite_and_cold.jpg",
        80,
        model="ssd-mobilenet-v1-coco-quant",
        task="object_detection",
    )
    produce(settings, [request_record(job) for job in jobs])
    return executor, jobs


def test_sigkill_loses_nothing(settings, group, spawn) -> None:
    first, jobs = one_executor_with_a_backlog(settings, group, spawn, "killed")

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
    first, jobs = one_executor_with_a_backlog(settings, group, spawn, "terminated")

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
