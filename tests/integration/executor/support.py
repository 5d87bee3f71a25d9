"""Driving real executors against the real Kafka and image store, with bounded waits."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from executor_service.bootstrap import Executor
from executor_service.settings import ExecutorSettings
from inference_common.events import KafkaRecord
from inference_common.image_store import ImageKey
from inference_common.image_stores import open_image_store
from inference_common.kafka import client_config, consumer_config, producer_config
from inference_common.settings import CommonSettings
from tests.contracts import validate_kafka_event
from tests.unit.executor.builders import execution_requested

ROOT = Path(__file__).resolve().parents[3]
IMAGES = ROOT / ".cache" / "assets" / "images"


def store_image(settings: CommonSettings, data: bytes) -> dict[str, Any]:
    """Store bytes as the job service does, in the store IMAGE_STORE names; the ImageRef of an
    execution request."""
    sha256 = hashlib.sha256(data).hexdigest()
    stores = open_image_store(settings)
    try:
        uri = stores.put(ImageKey(sha256, uuid.uuid4().hex), data, "image/jpeg")
    finally:
        stores.close()
    return {
        "uri": uri,
        "sha256": sha256,
        "size": len(data),
        "media_type": "image/jpeg",
        "width": 1,
        "height": 1,
    }


def produce(
    settings: CommonSettings,
    records: Iterable[KafkaRecord | tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]],
) -> None:
    producer = Producer(producer_config(settings))
    for record in records:
        key, value, headers = (
            (record.key, record.value, record.headers)
            if isinstance(record, KafkaRecord)
            else record
        )
        producer.produce(settings.topic_jobs, value=value, key=key, headers=headers)
    assert producer.flush(30) == 0


def requests_for(settings: CommonSettings, image: str, count: int, **fields: Any) -> list[dict]:
    ref = store_image(settings, (IMAGES / image).read_bytes())
    return [execution_requested(ref, **fields) for _ in range(count)]


class TopicReader:
    """Reads a whole topic from the beginning, every partition, without a consumer group."""

    def __init__(self, settings: CommonSettings, topic: str) -> None:
        self.messages: list[Message] = []
        self._consumer = Consumer(
            consumer_config(
                settings, f"reader-{uuid.uuid4().hex}", **{"isolation.level": "read_uncommitted"}
            )
        )
        metadata = self._consumer.list_topics(topic, timeout=30)
        self._partitions = [TopicPartition(topic, p) for p in metadata.topics[topic].partitions]
        self._consumer.assign(
            [TopicPartition(topic, p.partition, OFFSET_BEGINNING) for p in self._partitions]
        )

    def read_until(
        self, done: Callable[[list[Message]], bool], timeout: float = 60.0
    ) -> list[Message]:
        deadline = time.monotonic() + timeout
        while not done(self.messages):
            if time.monotonic() > deadline:
                raise TimeoutError(f"gave up after {timeout} s with {len(self.messages)} messages")
            for message in self._consumer.consume(100, timeout=0.2):
                if message.error() is None:
                    self.messages.append(message)
        return self.messages

    def read_to_end(self, timeout: float = 30.0) -> list[Message]:
        """Everything in the topic now: up to each partition's current end offset."""
        ends = {
            tp.partition: self._consumer.get_watermark_offsets(tp, timeout=10)[1]
            for tp in self._partitions
        }

        def caught_up(messages: list[Message]) -> bool:
            seen: dict[int, int] = {}
            for message in messages:
                seen[message.partition()] = max(seen.get(message.partition(), -1), message.offset())
            return all(end == 0 or seen.get(p, -1) + 1 >= end for p, end in ends.items())

        return self.read_until(caught_up, timeout)

    def close(self) -> None:
        self._consumer.close()


@contextmanager
def topic_reader(settings: CommonSettings, topic: str) -> Iterator[TopicReader]:
    reader = TopicReader(settings, topic)
    try:
        yield reader
    finally:
        reader.close()


def event_type(message: Message) -> str:
    headers = dict(message.headers() or [])
    return headers["ce_type"].decode().removeprefix("io.cvinference.job.").removesuffix(".v1")


def events(messages: list[Message]) -> list[tuple[str, dict[str, Any]]]:
    """(short type, data) of every result, each validated against the contract."""
    return [(event_type(m), validate_kafka_event(m.headers(), m.value())) for m in messages]


def job_ids(messages: list[Message], kind: str) -> set[str]:
    return {data["job_id"] for short, data in events(messages) if short == kind}


def executor_env(**overrides: str) -> dict[str, str]:
    """The test's environment (isolated topics and database) plus executor settings."""
    return {
        **os.environ,
        "EXECUTOR_HTTP_PORT": "0",
        "EXECUTOR_WORKERS": "1",
        "KAFKA_SESSION_TIMEOUT_MS": "6000",  # the broker's minimum: quick takeover from the dead
        "LOG_LEVEL": "INFO",
        **overrides,
    }


class ExecutorProcess:
    """`python -m executor_service` as a child process, logs kept in a file."""

    def __init__(self, log_path: Path, **env: str) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "executor_service"],
            cwd=ROOT,
            env=executor_env(**env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def executor_id(self) -> str:
        import socket

        return f"{socket.gethostname()}:{self.process.pid}"

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def wait_for_group(
    settings: CommonSettings,
    group: str,
    members: int,
    timeout: float = 60.0,
    *,
    holding: int | None = None,
) -> dict[str, set[int]]:
    """Until the group is stable with `members` consumers, `holding` of them (default: all)
    with a share of the jobs topic's partitions and every partition held; returns each
    member's partitions by client id (the executor id)."""
    holding = members if holding is None else holding
    admin = AdminClient(client_config(settings))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        description = admin.describe_consumer_groups([group])[group].result(timeout=10)
        shares = {
            member.client_id: {tp.partition for tp in member.assignment.topic_partitions}
            for member in description.members
        }
        held = set().union(*shares.values())
        if (
            len(shares) == members
            and sum(1 for share in shares.values() if share) == holding
            and len(held) == settings.topic_partitions
            and str(description.state).endswith("STABLE")
        ):
            return shares
        time.sleep(0.2)
    raise TimeoutError(f"group {group} did not reach {members} members, {holding} with partitions")


class ExecutorThread:
    """An executor in this process, for tests that look inside (metrics, readiness)."""

    def __init__(self, settings: ExecutorSettings) -> None:
        self.executor = Executor(settings)
        self.exit_code: int | None = None
        self._thread = threading.Thread(target=self._run, name="executor-under-test", daemon=True)

    def _run(self) -> None:
        self.exit_code = self.executor.run()

    def __enter__(self) -> ExecutorThread:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.executor.stop()
        self._thread.join(60)
        assert not self._thread.is_alive(), "the executor did not stop within 60 s"
