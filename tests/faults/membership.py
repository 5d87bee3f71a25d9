"""How long a consumer group leaves partitions unserved after a member is SIGKILLed and restarted.

    python -m tests.faults.membership --bootstrap 127.0.0.1:23092   # a private stack's Kafka

For each way of joining (the classic protocol with dynamic or static members, KIP-848's
`group.protocol=consumer` with dynamic or static members): two member processes share a topic of
six partitions while a producer writes to every partition ten times a second. One member is
SIGKILLed, restarted one second later, and the probe measures the time from the restart until
every partition has delivered a message produced after it. docs/faults.md has the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

PARTITIONS = 6
SESSION_TIMEOUT_MS = 10_000
HEARTBEAT_INTERVAL_MS = 1_000
GIVE_UP_S = 60.0

# One member: prints "partition produced-at consumed-at" for every message it reads.
MEMBER = """
import json, sys, time
from confluent_kafka import Consumer
consumer = Consumer(json.loads(sys.argv[1]))
consumer.subscribe([sys.argv[2]])
while True:
    message = consumer.poll(0.1)
    if message is None or message.error():
        continue
    print(message.partition(), message.value().decode(), time.time(), flush=True)
"""


@dataclass(frozen=True)
class Variant:
    protocol: str  # "classic" or "consumer" (KIP-848)
    static: bool

    @property
    def name(self) -> str:
        return f"{self.protocol}, {'static' if self.static else 'dynamic'}"

    def config(self, bootstrap: str, group: str, member: int) -> dict[str, Any]:
        config: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "group.protocol": self.protocol,
            "auto.offset.reset": "latest",
        }
        if self.protocol == "classic":
            # With KIP-848 the broker sets both (stack/localstack.py: the same 10 s and 1 s).
            config["session.timeout.ms"] = SESSION_TIMEOUT_MS
            config["heartbeat.interval.ms"] = HEARTBEAT_INTERVAL_MS
            config["partition.assignment.strategy"] = "cooperative-sticky"
        if self.static:
            config["group.instance.id"] = f"probe-member-{member}"
        return config


@dataclass
class Member:
    process: subprocess.Popen[str]
    # partition -> (produced at, consumed at) of every message read
    seen: list[tuple[int, float, float]] = field(default_factory=list)

    @classmethod
    def start(cls, config: dict[str, Any], topic: str) -> Member:
        process = subprocess.Popen(
            [sys.executable, "-c", MEMBER, json.dumps(config), topic],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        member = cls(process)
        threading.Thread(target=member._read, daemon=True).start()
        return member

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            partition, produced, consumed = line.split()
            self.seen.append((int(partition), float(produced), float(consumed)))

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


def serving_since(members: Sequence[Member], since: float) -> dict[int, float]:
    """Partition -> when its first message produced after `since` was consumed."""
    first: dict[int, float] = {}
    for member in members:
        for partition, produced, consumed in list(member.seen):
            if produced >= since and consumed < first.get(partition, float("inf")):
                first[partition] = consumed
    return first


def measure(bootstrap: str, variant: Variant) -> float | None:
    """Seconds from the restart until every partition is served again (None: not in time)."""
    topic = f"membership-probe-{uuid.uuid4().hex[:8]}"
    group = f"{topic}-group"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(30)
    stop = threading.Event()
    threading.Thread(target=_produce, args=(bootstrap, topic, stop), daemon=True).start()
    members = [Member.start(variant.config(bootstrap, group, n), topic) for n in range(2)]
    try:
        _wait(lambda: len(serving_since(members, time.time() - 1.0)) == PARTITIONS, GIVE_UP_S)
        time.sleep(2.0)  # a steady group
        members[0].kill()
        time.sleep(1.0)
        restarted = time.time()
        members.append(Member.start(variant.config(bootstrap, group, 0), topic))
        if not _wait(lambda: len(serving_since(members, restarted)) == PARTITIONS, GIVE_UP_S):
            return None
        return max(serving_since(members, restarted).values()) - restarted
    finally:
        stop.set()
        for member in members:
            member.kill()
        admin.delete_topics([topic])


def _produce(bootstrap: str, topic: str, stop: threading.Event) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    while not stop.is_set():
        for partition in range(PARTITIONS):
            producer.produce(topic, value=repr(time.time()).encode(), partition=partition)
        producer.poll(0)
        time.sleep(0.1)
    producer.flush(5)


def _wait(condition: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults.membership", description=__doc__)
    parser.add_argument("--bootstrap", required=True, help="a private stack's Kafka")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    variants = [Variant(p, static) for p in ("classic", "consumer") for static in (False, True)]
    for variant in variants:
        figures = [measure(args.bootstrap, variant) for _ in range(args.runs)]
        shown = ", ".join("not in 60 s" if f is None else f"{f:.1f} s" for f in figures)
        print(f"{variant.name:20} {shown}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
