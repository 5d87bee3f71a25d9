"""Benchmark: the same backlog drained by 1, 2, 3 executor processes in one consumer group.

    uv run python -m benchmarks.scale [--models NAME ...] [--jobs 400]
                                [--rounds 3] [--executors 1 2 3] [--partitions 3]

Per model, `--rounds` rounds, each trying every executor count in turn (interleaved, so a change
in the machine's other load falls on every count alike). One try: fresh topics with
`--partitions` partitions; N processes of `python -m executor_service` with EXECUTOR_WORKERS=1 in
a group of their own, started and holding their partitions before anything is produced; then a
backlog of `--jobs` execution_requested events keyed by job id. The rate comes from the events
(first started_at to last completed_at). A count's figure is its median try, its ratio is
against the one-executor figure of the same run. Also printed: the jobs each executor finished,
the CPU time per job of the executors, Kafka and FerretDB (from /proc; at the measured rate,
ms per job x jobs/s / 1000 is the cores they kept busy), and the cores everything else on the
machine used meanwhile: with C cores, more than C executors cannot go faster whatever the
partitions, and other load shows in that last figure.
Needs the local stack and the asset cache; uses its own topics, groups and database.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient

from benchmarks.executor import (
    completions,
    fresh_run,
    image_for,
    produce_requests,
    store_images,
    wait_ready,
)
from benchmarks.processes import cpu_seconds, free_port, listening_pids, port_of
from executor_service.settings import ExecutorSettings
from inference_common.assets import AssetStore
from inference_common.kafka import client_config
from inference_common.mongo import sync_client

DEFAULT_MODELS = ["mnist-lstm-tflm-float32", "mobilenet-v2-imagenet-quant"]


@dataclass(frozen=True)
class Workload:
    model: str
    task: str
    refs: list[dict[str, Any]]  # stored images, used round robin
    jobs: int


@dataclass(frozen=True)
class Try:
    """One backlog drained by one group of executors."""

    rate: float  # jobs/s
    per_executor: list[int]  # jobs completed by each process, most first
    cpu_ms: dict[str, float]  # CPU ms per job: executors, then the stack's processes
    other_cores: float  # CPU s per wall s of every other process on the machine


@dataclass(frozen=True)
class Point:
    executors: int
    tries: list[Try]

    @property
    def rate(self) -> float:
        return statistics.median(t.rate for t in self.tries)

    @property
    def cpu_ms(self) -> dict[str, float]:
        names = self.tries[0].cpu_ms
        return {
            name: statistics.median(t.cpu_ms.get(name, 0.0) for t in self.tries) for name in names
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="executor-scale-bench", description=__doc__)
    parser.add_argument("--models", nargs="*", default=DEFAULT_MODELS)
    parser.add_argument("--jobs", type=int, default=400, help="backlog of one try")
    parser.add_argument("--rounds", type=int, default=3, help="tries per executor count")
    parser.add_argument("--executors", nargs="*", type=int, default=[1, 2, 3])
    parser.add_argument("--partitions", type=int, default=3)
    args = parser.parse_args(argv)
    settings = ExecutorSettings(topic_partitions=args.partitions)
    store = AssetStore.from_settings(settings)
    print(_machine(args), flush=True)
    for name in args.models:
        points = _bench_model(name, store, settings, args)
        print(_table(name, points), flush=True)
    return 0


def _machine(args: argparse.Namespace) -> str:
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return (
        f"machine: {os.cpu_count()} CPUs, load average {load}; {args.partitions} partitions, "
        f"EXECUTOR_WORKERS=1 per process, {args.rounds} rounds of {args.jobs} jobs per count"
    )


def _bench_model(
    name: str, store: AssetStore, settings: ExecutorSettings, args: argparse.Namespace
) -> list[Point]:
    _image_name, data = image_for(name, store)
    database = f"bench_{uuid.uuid4().hex[:8]}"
    run_settings = settings.model_copy(update={"mongodb_database": database})
    try:
        refs = store_images(run_settings, data)
        workload = Workload(name, store.manifest.model_spec(name).task, refs, args.jobs)
        stack = _stack_pids(settings)
        tries: dict[int, list[Try]] = {count: [] for count in args.executors}
        for _round in range(args.rounds):
            for count in args.executors:
                tries[count].append(_drain(run_settings, count, workload, stack))
                print(_line(name, count, tries[count][-1]), flush=True)
        return [Point(count, tried) for count, tried in tries.items()]
    finally:
        client = sync_client(settings)
        client.drop_database(database)
        client.close()


def _drain(
    settings: ExecutorSettings, count: int, workload: Workload, stack: dict[str, int]
) -> Try:
    """`count` executors in a group of their own on fresh topics drain the workload."""
    run_settings, env = fresh_run(settings)
    env["EXECUTOR_WORKERS"] = "1"
    group = env["EXECUTOR_GROUP_ID"]
    with ExitStack() as cleanup:
        cleanup.callback(_delete_topics, run_settings)
        executors = []
        for _ in range(count):
            port = free_port()
            process = subprocess.Popen(
                [sys.executable, "-m", "executor_service"],
                env={**env, "EXECUTOR_HTTP_PORT": str(port)},
            )
            cleanup.callback(_stop, process)
            executors.append((process, port))
        for _process, port in executors:
            wait_ready(port)
        _wait_for_group(run_settings, group, min(count, settings.topic_partitions))
        processes = {
            "executors": [process.pid for process, _port in executors],
            **{name: [pid] for name, pid in stack.items()},
        }
        before = {pid: cpu_seconds(pid) for pids in processes.values() for pid in pids}
        machine_before, began = _machine_cpu_seconds(), time.monotonic()
        job_ids = produce_requests(
            run_settings, workload.model, workload.task, workload.refs, workload.jobs
        )
        rate, finishers = completions(run_settings, set(job_ids))
        spent = {
            name: sum(cpu_seconds(pid) - before[pid] for pid in pids)
            for name, pids in processes.items()
        }
        machine = _machine_cpu_seconds() - machine_before
        wall = time.monotonic() - began
    return Try(
        rate,
        sorted(finishers.values(), reverse=True),
        {name: seconds * 1000 / workload.jobs for name, seconds in spent.items()},
        (machine - sum(spent.values())) / wall,
    )


def _stack_pids(settings: ExecutorSettings, attempts: int = 5) -> dict[str, int]:
    """Kafka's and FerretDB's processes when they run here; looked up once, a few times if a
    process's file descriptors changed under the scan."""
    ports = {
        "FerretDB": port_of(settings.mongodb_uri.get_secret_value(), 27017),
        "Kafka": port_of(settings.kafka_bootstrap_servers, 9092),
    }
    found: dict[str, int] = {}
    for _ in range(attempts):
        found = {**listening_pids(ports), **found}
        if len(found) == len(ports):
            break
        time.sleep(0.2)
    return dict(sorted(found.items()))


def _wait_for_group(
    settings: ExecutorSettings, group: str, holders: int, timeout: float = 60.0
) -> None:
    """Until `holders` members of the group hold partitions and the group is stable."""
    admin = AdminClient(client_config(settings))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        description = admin.describe_consumer_groups([group])[group].result(timeout=10)
        assigned = [m for m in description.members if m.assignment.topic_partitions]
        if len(assigned) == holders and str(description.state).endswith("STABLE"):
            return
        time.sleep(0.2)
    raise TimeoutError(f"group {group}: {holders} members never held partitions")


def _machine_cpu_seconds() -> float:
    """CPU time spent by every process on the machine so far (all but idle and iowait)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    busy = sum(fields[:8]) - fields[3] - fields[4]  # user nice system idle iowait irq soft steal
    return busy / os.sysconf("SC_CLK_TCK")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def _delete_topics(settings: ExecutorSettings) -> None:
    topics = [settings.topic_jobs, settings.topic_results, settings.topic_dead_letter]
    AdminClient(client_config(settings)).delete_topics(topics, operation_timeout=10)


def _line(model: str, count: int, tried: Try) -> str:
    cpu = ", ".join(f"{name} {ms:.2f}" for name, ms in tried.cpu_ms.items())
    return (
        f"{model}: {count} executor(s) {tried.rate:.0f} jobs/s, jobs per executor "
        f"{tried.per_executor}; CPU ms per job: {cpu}; other load {tried.other_cores:.2f} cores"
    )


def _table(model: str, points: list[Point]) -> str:
    names = list(points[0].cpu_ms)
    lines = [
        f"{model}:",
        "",
        "| executors | jobs/s (median) | vs one executor | tries (jobs/s) | jobs per executor "
        "| CPU ms per job: " + ", ".join(names) + " | cores they kept busy | other load (cores) |",
        "| ---: | ---: | ---: | --- | --- | --- | ---: | --- |",
    ]
    base = points[0].rate
    for p in points:
        cpu = p.cpu_ms
        splits = (t.per_executor for t in p.tries)
        per_executor = [sum(column) for column in zip_longest(*splits, fillvalue=0)]
        lines.append(
            f"| {p.executors} | {p.rate:.0f} | {p.rate / base:.2f} "
            f"| {', '.join(f'{t.rate:.0f}' for t in p.tries)} "
            f"| {', '.join(map(str, per_executor))} "
            f"| {', '.join(f'{cpu[name]:.2f}' for name in names)} "
            f"| {sum(cpu.values()) * p.rate / 1000:.2f} "
            f"| {', '.join(f'{t.other_cores:.2f}' for t in p.tries)} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
