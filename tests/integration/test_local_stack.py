"""The local stack itself (stack/localstack.py): idempotent `up`, and recovery from kill -9.

These tests kill the shared broker and FerretDB on purpose; the module fixture always brings
the stack back up, so the tests that run after them find it running.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pymongo
import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer

pytestmark = [
    pytest.mark.integration,
    # These kill servers on purpose: only ever the local stack's own, never servers given by env.
    pytest.mark.skipif(
        bool(os.environ.get("KAFKA_BOOTSTRAP_SERVERS") and os.environ.get("MONGODB_URI")),
        reason="KAFKA_BOOTSTRAP_SERVERS and MONGODB_URI point at servers this stack did not start",
    ),
]

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "stack" / "localstack.py"


def _load_localstack() -> ModuleType:
    spec = importlib.util.spec_from_file_location("localstack_under_test", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def stack() -> Iterator[ModuleType]:
    module = _load_localstack()
    module.up()
    yield module
    module.up()  # whatever a test killed runs again for the rest of the session


def _pids(statuses: dict[str, Any]) -> dict[str, int | None]:
    return {name: st.pid for name, st in statuses.items()}


def test_second_up_is_fast_and_starts_nothing(stack: ModuleType) -> None:
    before = stack.up()
    assert all(st.running and st.answering for st in before.values()), before

    started = time.monotonic()
    after = stack.up()
    elapsed = time.monotonic() - started

    assert _pids(after) == _pids(before)
    # Well under a second on an idle machine; the margin is for a busy CI runner.
    assert elapsed < 2.0, f"a no-op up took {elapsed:.2f} s"


def test_cli_up_status_and_env(stack: ModuleType) -> None:
    pids = _pids(stack.status())

    def cli(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, str(SCRIPT), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return done.stdout

    cli("up")
    assert _pids(stack.status()) == pids
    status = cli("status")
    for name, pid in pids.items():
        assert f"{name}" in status and f"pid {pid}" in status, status
    cfg = stack.Config.from_env()
    env = cli("env").splitlines()
    assert env[:2] == [
        f"KAFKA_BOOTSTRAP_SERVERS={cfg.kafka_bootstrap}",
        f"MONGODB_URI={cfg.mongodb_uri}",
    ]
    # The S3 image store's settings follow when the S3 server is up (`make test` starts it).
    s3 = (
        {"IMAGE_STORE": "s3", **stack.s3_env(cfg)}
        if cfg.s3 or stack.status(cfg, stack.OBJECT_STORE)["versitygw"].running
        else {}
    )
    assert env[2:] == [f"{name}={value}" for name, value in s3.items()]


def test_pid_file_of_a_foreign_process_counts_as_stopped(stack: ModuleType, tmp_path) -> None:
    cfg = stack.Config(tmp_path, 1, 2, 3, 1.0)
    (tmp_path / "run").mkdir()
    # This test process is alive, but the recorded start time is not its own: a reused pid.
    (tmp_path / "run" / "kafka.pid").write_text(f"{os.getpid()} 1\n")
    (tmp_path / "run" / "ferretdb.pid").write_text("999999999 1\n")
    assert stack._running_pid(cfg, "kafka") is None
    assert stack._running_pid(cfg, "ferretdb") is None


def _produce_one(bootstrap: str, topic: str, value: bytes) -> None:
    delivered: list[KafkaError | None] = []
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    producer.produce(
        topic,
        key=b"key-1",
        value=value,
        headers=[("ce_id", b"id-1")],
        on_delivery=lambda err, _msg: delivered.append(err),
    )
    assert producer.flush(30) == 0, "message not delivered within 30 s"
    assert delivered == [None]


def _consume_one(bootstrap: str, topic: str, timeout: float = 60.0) -> Message:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"stack-test-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is not None and msg.error() is None:
                return msg
        raise AssertionError(f"nothing read from {topic} within {timeout:.0f} s")
    finally:
        consumer.close()


def test_broker_recovers_after_kill_9_with_its_messages(stack: ModuleType) -> None:
    bootstrap = stack.Config.from_env().kafka_bootstrap
    topic = f"stack-test.{uuid.uuid4().hex[:10]}"
    _produce_one(bootstrap, topic, b"written before the crash")

    killed = stack.kill_service("kafka")
    assert killed is not None
    assert not stack.status()["kafka"].running

    started = time.monotonic()
    after = stack.up()["kafka"]
    print(f"kafka back after kill -9 in {time.monotonic() - started:.1f} s")
    assert after.running and after.answering and after.pid != killed

    msg = _consume_one(bootstrap, topic)
    assert msg.value() == b"written before the crash"
    assert msg.key() == b"key-1"
    assert msg.headers() == [("ce_id", b"id-1")]


def _mongo(uri: str) -> pymongo.MongoClient[dict[str, Any]]:
    return pymongo.MongoClient(uri, serverSelectionTimeoutMS=10_000)


def test_ferretdb_recovers_after_kill_9_with_its_documents(stack: ModuleType) -> None:
    uri = stack.Config.from_env().mongodb_uri
    database = f"stack_test_{uuid.uuid4().hex[:10]}"
    with _mongo(uri) as client:
        client[database].docs.insert_one({"_id": "before-crash", "n": 1})

    killed = stack.kill_service("ferretdb")
    assert killed is not None
    assert not stack.status()["ferretdb"].running

    started = time.monotonic()
    after = stack.up()["ferretdb"]
    print(f"ferretdb back after kill -9 in {time.monotonic() - started:.1f} s")
    assert after.running and after.answering and after.pid != killed

    with _mongo(uri) as client:
        try:
            found = client[database].docs.find_one({"_id": "before-crash"})
            assert found == {"_id": "before-crash", "n": 1}
        finally:
            client.drop_database(database)


def test_the_atomic_test_server_starts_answers_and_keeps_nothing(stack: ModuleType) -> None:
    cfg = stack.Config.from_env()
    server = stack.up(cfg, atomic_mongo=True)["atomic-mongo"]
    assert server.running and server.answering, server
    database = f"stack_test_{uuid.uuid4().hex[:10]}"
    with _mongo(cfg.atomic_mongodb_uri) as client:
        client[database].docs.insert_one({"_id": "before-restart"})
        assert client.admin.command("buildInfo")["version"] == "6.0.0"

    assert stack.stop_service("atomic-mongo", cfg=cfg)
    assert not stack.status(cfg, ("atomic-mongo",))["atomic-mongo"].running
    restarted = stack.up(cfg, atomic_mongo=True)["atomic-mongo"]
    assert restarted.answering and restarted.pid != server.pid

    # In memory only: a test server, not a database.
    with _mongo(cfg.atomic_mongodb_uri) as client:
        assert client[database].docs.find_one({"_id": "before-restart"}) is None
