"""`simulator watch` against the real Kafka: known events in, the expected lines out."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from cloudevents.core.bindings import kafka as kafka_binding
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from confluent_kafka import Producer

from inference_common.events import EventType, to_record
from inference_common.kafka import ensure_topics, producer_config
from inference_common.settings import CommonSettings
from tests.unit.simulator import job_events as ev

pytestmark = pytest.mark.integration

FAILING_JOB = "51aa0e9d000000000000000000005678"
WATCH_TIMEOUT_S = 90
MODEL = "[model mobilenet-v2-imagenet-quant]"


def millis(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def produce(
    settings: CommonSettings,
    topic: str,
    events: Sequence[CloudEvent],
    stamp: datetime | None = None,
) -> None:
    """Binary mode, as the services write; `stamp` sets the Kafka timestamp (default: now)."""
    producer = Producer(producer_config(settings))
    for event in events:
        record = to_record(event)
        headers: list[tuple[str, str | bytes | None]] = list(record.headers)
        # Timestamp 0 asks librdkafka for the current time.
        when = millis(stamp) if stamp else 0
        producer.produce(topic, record.value, record.key, headers=headers, timestamp=when)
    assert producer.flush(30) == 0


def produce_raw(
    settings: CommonSettings,
    value: bytes,
    *,
    key: bytes | None,
    headers: list[tuple[str, str | bytes | None]],
    stamp: datetime,
) -> None:
    producer = Producer(producer_config(settings))
    producer.produce(settings.topic_jobs, value, key, headers=headers, timestamp=millis(stamp))
    assert producer.flush(30) == 0


def watch(*args: str) -> subprocess.CompletedProcess[str]:
    """The real command line, with the test's topics from the environment, times in UTC."""
    return subprocess.run(
        [sys.executable, "-m", "simulator", "watch", *args],
        capture_output=True,
        text=True,
        timeout=WATCH_TIMEOUT_S,
        env={**os.environ, "TZ": "UTC"},
        check=False,
    )


@pytest.fixture
def known_log(settings: CommonSettings) -> None:
    """Two jobs' lives across both topics, one in structured mode, and a stray message."""
    ensure_topics(settings)
    produce(
        settings,
        settings.topic_jobs,
        [
            ev.event(EventType.CREATED, ev.created(), 0.0),
            ev.event(EventType.EXECUTION_REQUESTED, ev.execution_requested(), 0.1),
            ev.event(
                EventType.EXECUTION_REQUESTED, ev.execution_requested(FAILING_JOB), 0.6, FAILING_JOB
            ),
        ],
    )
    structured = kafka_binding.to_structured(
        ev.event(EventType.CREATED, ev.created(FAILING_JOB), 0.5, FAILING_JOB), JSONFormat()
    )
    produce_raw(
        settings,
        structured.value,
        key=FAILING_JOB.encode(),
        headers=list(structured.headers.items()),
        stamp=ev.at(0.5),
    )
    produce(
        settings,
        settings.topic_results,
        [
            ev.event(EventType.STARTED, ev.started(), 0.2),
            ev.event(EventType.COMPLETED, ev.completed(), 0.3),
            ev.event(EventType.STARTED, ev.started(FAILING_JOB), 0.7, FAILING_JOB),
            ev.event(EventType.FAILED, ev.failed(FAILING_JOB), 0.8, FAILING_JOB),
        ],
    )
    produce_raw(settings, b"\x00not an event", key=None, headers=[], stamp=ev.at(5))


def test_watch_prints_the_log_in_event_order(known_log: None, settings: CommonSettings) -> None:
    done = watch(
        "--from-beginning", "--max-events", "9", "--idle-timeout", "30", "--reorder-window", "2"
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:8] == [
        f"12:00:01.123 Inference job (id: 3f2a9c1e…) created: NEW {MODEL}",
        "12:00:01.223 Inference job (id: 3f2a9c1e…) execution requested: QUEUED (attempt 1)",
        "12:00:01.323 Inference job (id: 3f2a9c1e…) started: RUNNING on host-a:4242",
        "12:00:01.423 Inference job (id: 3f2a9c1e…) completed: DONE Egyptian cat 0.82 (23 ms)",
        f"12:00:01.623 Inference job (id: 51aa0e9d…) created: NEW {MODEL}",
        "12:00:01.723 Inference job (id: 51aa0e9d…) execution requested: QUEUED (attempt 1)",
        "12:00:01.823 Inference job (id: 51aa0e9d…) started: RUNNING on host-a:4242",
        "12:00:01.923 Inference job (id: 51aa0e9d…) failed: FAILED image_unreadable: "
        "cannot identify image file",
    ]
    # The stray message has no key, so Kafka chose its partition (and so its offset).
    assert re.fullmatch(
        rf"12:00:06\.123 warning: skipped a message on {re.escape(settings.topic_jobs)} "
        r"\[partition \d, offset \d\]: not a CloudEvent: "
        r"Expecting value: line 1 column 1 \(char 0\)",
        lines[8],
    ), lines[8]
    assert len(lines) == 9
    assert "\x1b[" not in done.stdout  # no colour codes when stdout is not a terminal


def test_watch_filters_by_job_prefix_and_type(known_log: None) -> None:
    done = watch(
        "--from-beginning",
        "--job",
        "51aa",
        "--type",
        "created,failed",
        "--idle-timeout",
        "5",
        "--full-ids",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"12:00:01.623 Inference job (id: {FAILING_JOB}) created: NEW {MODEL}",
        f"12:00:01.923 Inference job (id: {FAILING_JOB}) failed: FAILED image_unreadable: "
        "cannot identify image file",
    ]


def test_watch_from_now_skips_what_was_logged_before_it_started(settings: CommonSettings) -> None:
    ensure_topics(settings)
    now = datetime.now(UTC)
    produce(
        settings,
        settings.topic_jobs,
        [ev.event(EventType.CREATED, ev.created(), 0)],
        now - timedelta(hours=1),
    )
    # Stamped a little in the future, so it counts as "after the start" however slowly the
    # watcher starts up; Kafka positions a reader from now by these timestamps.
    produce(
        settings,
        settings.topic_jobs,
        [
            ev.event(EventType.PURGED, ev.purged(), 3),
            ev.event(EventType.DELETED, ev.deleted(), 4),
        ],
        now + timedelta(minutes=5),
    )
    done = watch("--idle-timeout", "5")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "12:00:04.123 Inference job (id: 3f2a9c1e…) purged: image removed",
        "12:00:05.123 Inference job (id: 3f2a9c1e…) deleted",
    ]


def test_watch_waits_for_topics_and_exits_0_on_ctrl_c(settings: CommonSettings) -> None:
    # No ensure_topics: the watcher starts before the platform has created its topics.
    # Ctrl-C as in a terminal, even when the tests run in a shell's background job, which
    # starts everything with SIGINT ignored (the watcher would then never stop).
    as_in_a_terminal = (
        "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "sys.argv = ['simulator', 'watch']; runpy.run_module('simulator', run_name='__main__')"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", as_in_a_terminal],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    waiting = f"topic {settings.topic_jobs} does not exist yet; waiting for it"
    assert process.stderr is not None
    seen: list[str] = []
    try:
        # Interrupt once it is watching: a SIGINT during the interpreter's start-up tests
        # nothing of ours (on a loaded machine that start alone can take seconds).
        deadline = time.monotonic() + 60
        while not any(waiting in line for line in seen) and time.monotonic() < deadline:
            line = process.stderr.readline()
            if not line:
                break
            seen.append(line)
        process.send_signal(signal.SIGINT)
        out, rest = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    err = "".join(seen) + rest
    assert process.returncode == 0, err
    assert out == ""
    assert waiting in err


def test_an_unreachable_kafka_is_one_line_and_exit_2(
    settings: CommonSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{port}")
    done = watch()
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        f"simulator: cannot reach Kafka at 127.0.0.1:{port}: "
        "Failed to get metadata: Local: Broker transport failure"
    ]
