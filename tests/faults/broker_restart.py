"""Where the seconds go when the Kafka broker is SIGKILLed and restarted.

    STACK_DIR=… STACK_KAFKA_PORT=… STACK_KAFKA_CONTROLLER_PORT=… STACK_MONGO_PORT=… \\
        python -m tests.faults.broker_restart --runs 2      # a private stack: it kills its broker

While an idempotent producer with the outbox relay's settings writes to six partitions ten times
a second and a static group member with the services' consumer settings reads them, the stack's
broker is SIGKILLed and started again 3 s later (stack/localstack.py, as `make faults` does).
From the restart it prints the broker's phases from its log, when it answered the stack's
readiness probe and the CPU seconds it had used by then, the first message delivered, and the
first consumed, of those produced after the restart. docs/faults.md has the figures.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from types import ModuleType
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, Producer

from inference_common.kafka import consumer_config, producer_config
from inference_common.settings import CommonSettings
from tests.conftest import load_localstack

PARTITIONS = 6
OUTAGE_S = 3.0
GIVE_UP_S = 90.0
# The broker's log lines that mark each phase of its start, in order.
PHASES = {
    "controller active": "Becoming the active controller",
    "registered": "Successfully registered broker",
    "logs recovered": r"Loaded \d+ logs",
    "unfenced": "The broker has been unfenced",
    "group coordinator loaded": "Finished loading of metadata from __consumer_offsets",
}


class Traffic:
    """Produces and consumes on a topic of its own; remembers when each message got through."""

    def __init__(self, settings: CommonSettings) -> None:
        self.settings = settings
        # One topic for every run: each partition adds to the broker's log recovery.
        self.topic = "broker-restart-probe"
        self.delivered: list[tuple[float, float]] = []  # (produced at, delivered at)
        self.consumed: list[tuple[float, float]] = []  # (produced at, consumed at)
        self.stop = threading.Event()

    def start(self) -> None:
        # The topic is created on first use with the stack's six partitions.
        for work in (self._produce, self._consume):
            threading.Thread(target=work, daemon=True).start()

    def _produce(self) -> None:
        # The relay's producer: idempotent, acks=all, a 10 s delivery timeout.
        producer = Producer(producer_config(self.settings, **{"message.timeout.ms": 10_000}))

        def delivered(error: KafkaError | None, message: Message) -> None:
            if error is None:
                self.delivered.append((float(message.value() or b"0"), time.time()))

        while not self.stop.is_set():
            for partition in range(PARTITIONS):
                value = repr(time.time()).encode()
                producer.produce(self.topic, value, partition=partition, on_delivery=delivered)
            producer.poll(0.1)

    def _consume(self) -> None:
        group = f"{self.topic}-group"
        static = {"group.instance.id": f"{group}-member"}
        consumer = Consumer(consumer_config(self.settings, group, **static))
        consumer.subscribe([self.topic])
        committed = time.monotonic()
        while not self.stop.is_set():
            message = consumer.poll(0.1)
            if message is not None and message.error() is None:
                self.consumed.append((float(message.value() or b"0"), time.time()))
            if time.monotonic() - committed > 1.0:  # as the services do: after the work
                consumer.commit(asynchronous=True)
                committed = time.monotonic()
        consumer.close()

    def first_after(self, records: list[tuple[float, float]], since: float) -> float | None:
        return min((done for produced, done in list(records) if produced >= since), default=None)


def measure(stack: ModuleType, cfg: Any) -> str:
    """One kill and restart of `cfg`'s broker (a stack/localstack.py Config)."""
    settings = CommonSettings(kafka_bootstrap_servers=cfg.kafka_bootstrap)
    traffic = Traffic(settings)
    traffic.start()
    try:
        _wait(lambda: traffic.first_after(traffic.consumed, time.time() - 1.0), 60.0)
        stack.kill_service("kafka", cfg=cfg)
        time.sleep(OUTAGE_S)
        restarted = time.time()
        stack.up(cfg)
        ready = time.time()
        cpu = _cpu_seconds(stack._running_pid(cfg, "kafka"))
        delivered = _wait(lambda: traffic.first_after(traffic.delivered, restarted), GIVE_UP_S)
        consumed = _wait(lambda: traffic.first_after(traffic.consumed, restarted), GIVE_UP_S)
    finally:
        traffic.stop.set()
    phases = _phases((cfg.logs / "kafka.log").read_text(errors="replace"))

    def since(moment: float | None) -> str:
        return "n/a" if moment is None else f"{moment - restarted:.1f}"

    return (
        f"load {os.getloadavg()[0]:.1f}; s from the restart: "
        + ", ".join(f"{name} {since(moment)}" for name, moment in phases.items())
        + f"; ready {since(ready)} (broker CPU {cpu:.1f} s); first delivered {since(delivered)}, "
        f"first consumed {since(consumed)}"
    )


def _phases(log: str) -> dict[str, float | None]:
    """Each phase's first log line since the last start (logs are appended across starts)."""
    tail = log[log.rfind("=== localstack: starting kafka") :]
    found: dict[str, float | None] = {}
    for name, pattern in PHASES.items():
        match = re.search(r"\[(\d{4}-\d\d-\d\dT[\d:]+,\d+)\][^\n]*" + pattern, tail)
        stamp = match and datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S,%f")
        found[name] = stamp.timestamp() if stamp else None
    return found


def _cpu_seconds(pid: int | None) -> float:
    """User and system CPU the process has used (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait(value: Callable[[], float | None], timeout: float) -> float | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = value()
        if found is not None:
            return found
        time.sleep(0.05)
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.faults.broker_restart", description=__doc__
    )
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args(argv)
    stack = load_localstack()
    cfg = stack.Config.from_env()
    if cfg.kafka_port == 9092 or "STACK_DIR" not in os.environ:
        print("refusing to kill the default stack's broker: set STACK_DIR and STACK_* ports")
        return 2
    for _ in range(args.runs):
        print(measure(stack, cfg), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
