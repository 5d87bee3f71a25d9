"""`make bench`: the platform against what a user would otherwise run, in one run.

    uv run --group bench python -m benchmarks.pipeline [--seconds 20] [--write docs/benchmarks.md]

Four systems classify the same photo (`cat_720p.jpg`, MobileNet v2), loaded by the same wrk
(benchmarks/post_image.lua) at 2 and then 16 connections, `--seconds` each after a short
warm-up:
- the platform's one-request `POST /models/{model}/classify` (the image as the body);
- the platform's jobs: `POST /jobs` (the raw image, execute=true in the query), the long poll
  `GET /jobs/{id}?wait=` until the job is finished, then `GET /jobs/{id}/result`;
- the synchronous endpoint (benchmarks/peers/sync_endpoint.py), started here;
- Celery on Redis (benchmarks/peers/celery_peer.py), started here with its own Redis.
Then, for each system, an open loop (benchmarks/open_loop.py) at half the rate it reached at
16 connections: the half-load point, p50 and p99 from each request's scheduled arrival.
During each 16-connection run: CPU time per job of every process that does the work (from
/proc, each process with its children), and the store's operations per job: the platform's
database commands (`serverStatus` `metrics.commands`, which FerretDB and MongoDB both count
per command; the drivers' own handshakes and heartbeats left out), Redis's commands for Celery
(`INFO commandstats`). The platform must be running (`make serve`);
KAFKA_BOOTSTRAP_SERVERS, MONGODB_URI, EXECUTOR_HTTP_PORT and API_URL say where it is.
"""

from __future__ import annotations

import argparse
import os
import platform
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Final

from pymongo import MongoClient

from benchmarks import load, open_loop
from benchmarks.peers import launch
from benchmarks.peers.classifier import MODEL
from benchmarks.processes import listening_pids, port_of, tree_cpu_seconds
from executor_service.settings import ExecutorSettings
from inference_common.assets import AssetStore
from simulator.settings import SimulatorSettings

IMAGE: Final = "images/cat_720p.jpg"
LOW, HIGH = 2, 16  # connections
WARM_UP_S: Final = 3.0
# Warm-up rounds go on until one answers within this (a cold start's first jobs wait for the
# consumer groups to form), at most WARM_UP_ROUNDS of them; the time it took is printed.
WARM_P99_MS: Final = 1000.0
WARM_UP_ROUNDS: Final = 10
# Commands the clients send on their own (handshakes, heartbeats, sessions), and ours.
NOT_JOB_WORK: Final = frozenset(
    {"hello", "ismaster", "isMaster", "ping", "buildInfo", "buildinfo", "endSessions",
     "serverStatus", "getParameter", "saslStart", "saslContinue", "info"}
)  # fmt: skip
# Markers around the generated part of the results page; the prose around them is kept.
BEGIN: Final = "<!-- bench:begin (written by `python -m benchmarks.pipeline --write`) -->"
END: Final = "<!-- bench:end -->"

SYNC, CELERY = "synchronous endpoint", "Celery + Redis"
CLASSIFY, JOBS = "platform: classify", "platform: jobs"


@dataclass(frozen=True)
class System:
    name: str
    url: str
    mode: load.Mode
    processes: dict[str, int]  # name -> pid; the process and its children count
    store: str = ""  # what `operations` counts: "database", "Redis"
    operations: Callable[[], Counter[str]] | None = None  # the store's so far, by name


@dataclass(frozen=True)
class Figures:
    system: str
    low: load.Load
    high: load.Load
    half: load.Load  # open loop at half the high run's rate
    cpu_ms: dict[str, float]  # per job of the high run, by process
    store: str
    operations: dict[str, float] | None  # store operations per job of the high run, by name

    @property
    def operations_per_job(self) -> float | None:
        return None if self.operations is None else sum(self.operations.values())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pipeline", description=__doc__)
    parser.add_argument("--seconds", type=float, default=20.0, help="per point (20)")
    parser.add_argument("--write", type=Path, help="put the results into this page")
    args = parser.parse_args(argv)
    load.wrk_path()  # fail now, not after the first system
    store = AssetStore.from_settings(SimulatorSettings())
    image = store.path_of(IMAGE)
    header = f"Measured {machine(args.seconds)}."
    print(header, flush=True)
    figures = []
    for start in _systems(image.read_bytes()):
        with start() as system:
            figure = measure(system, image, args.seconds)
        print(_line(figure), flush=True)
        figures.append(figure)
    results = table(figures)
    print(results)
    if args.write:
        write_results(args.write, header, results)
        print(f"written to {args.write}")
    return 0


def _systems(image: bytes) -> list[Callable[[], AbstractContextManager[System]]]:
    """In this order; the platform stays up throughout, the peers only while measured."""

    @contextmanager
    def platform_flow(name: str, path: str, mode: load.Mode) -> Iterator[System]:
        api_url = SimulatorSettings().api_url.rstrip("/")
        uri = ExecutorSettings().mongodb_uri.get_secret_value()
        database: MongoClient[dict[str, Any]]
        with MongoClient(uri) as database:
            processes = _platform_processes(api_url)
            count = partial(_database_commands, database)
            yield System(name, api_url + path, mode, processes, "database", count)

    @contextmanager
    def peer(
        name: str, start: Callable[[bytes], AbstractContextManager[launch.Peer]]
    ) -> Iterator[System]:
        with start(image) as running:
            if running.redis_url is None:
                yield System(name, running.url, "body", running.processes)
            else:
                count = partial(_redis_commands, running.redis_url)
                yield System(name, running.url, "body", running.processes, "Redis", count)

    return [
        lambda: platform_flow(CLASSIFY, f"/models/{MODEL}/classify", "body"),
        lambda: platform_flow(JOBS, "", "jobs"),
        lambda: peer(SYNC, launch.sync_endpoint),
        lambda: peer(CELERY, launch.celery_on_redis),
    ]


def measure(system: System, image: Path, seconds: float) -> Figures:
    warm_up(system, image)
    low = load.run(system.url, system.mode, image, LOW, seconds)
    cpu_before, operations_before = _cpu(system), _operations(system)
    high = load.run(system.url, system.mode, image, HIGH, seconds)
    cpu_after, operations_after = _cpu(system), _operations(system)
    jobs = max(high.done, 1)
    cpu_ms = {name: (cpu_after[name] - cpu_before[name]) * 1000 / jobs for name in cpu_before}
    cpu_ms["wrk"] = high.cpu_ms_per_job
    operations = None
    if operations_before is not None and operations_after is not None:
        spent = operations_after - operations_before
        operations = {name: count / jobs for name, count in sorted(spent.items())}
    # Open loop at half the closed loop's throughput: arrivals on schedule, so a stall shows.
    half = open_loop.run(system.url, system.mode, image, high.rate / 2, seconds)
    return Figures(system.name, low, high, half, cpu_ms, system.store, operations)


def warm_up(system: System, image: Path) -> None:
    p99s = []
    for _ in range(WARM_UP_ROUNDS):
        round_ = load.run(system.url, system.mode, image, LOW, WARM_UP_S)
        p99s.append(round_.p99_ms)
        if round_.done and round_.p99_ms < WARM_P99_MS:
            break
    rounds = ", ".join(f"{p99:.0f}" for p99 in p99s)
    print(f"{system.name}: warm-up {len(p99s) * WARM_UP_S:g} s (p99 per round: {rounds} ms)")


def _platform_processes(api_url: str) -> dict[str, int]:
    """The processes of this machine that serve the platform, found by their ports."""
    executor = ExecutorSettings()
    return listening_pids(
        {
            "job service": port_of(api_url, 80),
            "executor": executor.executor_http_port,
            "Kafka": port_of(executor.kafka_bootstrap_servers, 9092),
            "database": port_of(executor.mongodb_uri.get_secret_value(), 27017),
        }
    )


def _cpu(system: System) -> dict[str, float]:
    return {name: tree_cpu_seconds(pid) for name, pid in system.processes.items()}


def _operations(system: System) -> Counter[str] | None:
    return None if system.operations is None else system.operations()


def _redis_commands(url: str) -> Counter[str]:
    """Commands Redis has served so far, by name."""
    import redis  # the bench group's: imported here so the page tools work without it

    with redis.Redis.from_url(url) as client:
        stats = client.info("commandstats")
    calls = {
        name.removeprefix("cmdstat_"): int(figures["calls"]) for name, figures in stats.items()
    }
    return Counter({name: n for name, n in calls.items() if name not in NOT_JOB_WORK})


def _database_commands(database: MongoClient[dict[str, Any]]) -> Counter[str]:
    """Commands the database has served so far, by name."""
    status = database.admin.command("serverStatus")
    counted = status.get("metrics", {}).get("commands", {})
    return Counter(
        {
            name: int(figures["total"])
            for name, figures in counted.items()
            if isinstance(figures, dict) and "total" in figures and name not in NOT_JOB_WORK
        }
    )


def machine(seconds: float) -> str:
    executor = ExecutorSettings()
    return (
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {os.cpu_count()} CPUs "
        f"({platform.processor() or platform.machine()}), Python {platform.python_version()}; "
        f"platform executor workers={executor.executor_workers}, interpreter threads="
        f"{executor.executor_interpreter_threads}; peers {launch.WORKERS} worker processes, "
        f"one interpreter thread each; image {Path(IMAGE).name}; wrk, {seconds:g} s per point "
        f"after warm-up ({WARM_UP_S:g} s rounds until one has a p99 under {WARM_P99_MS:g} ms); "
        "everything, wrk included, on the same machine"
    )


def _ms(value: float) -> str:
    return "-" if value < 0 else f"{value:.0f}"


def _half(run: load.Load) -> str:
    failed = f", {run.failed} failed" if run.failed else ""
    rate = (run.done + run.failed) / run.seconds
    return f"{rate:.1f} ({_ms(run.p50_ms)} / {_ms(run.p99_ms)}{failed})"


def _point(run: load.Load) -> str:
    failed = f", {run.failed} failed" if run.failed else ""
    return f"{run.rate:.1f} ({_ms(run.p50_ms)} / {_ms(run.p99_ms)}{failed})"


def _line(f: Figures) -> str:
    ops = f.operations_per_job
    commands = "" if ops is None else f"; {f.store} {ops:.1f} operations/job"
    cpu = ", ".join(f"{name} {ms:.1f}" for name, ms in f.cpu_ms.items())
    return (
        f"{f.system}: c={LOW} {_point(f.low)}, c={HIGH} {_point(f.high)} req/s (p50 / p99 ms), "
        f"half load {_half(f.half)} (open loop, its own CPU {f.half.cpu_ms_per_job:.1f} ms/job); "
        f"CPU ms/job {cpu}{commands}"
    )


def table(figures: Sequence[Figures]) -> str:
    lines = [
        f"| system | c={LOW}: req/s (p50 / p99 ms) | c={HIGH}: req/s (p50 / p99 ms) "
        f"| half load, open loop: req/s (p50 / p99 ms) "
        f"| CPU ms per job at c={HIGH}, by process | store operations per job at c={HIGH} |",
        "| --- | ---: | ---: | ---: | --- | --- |",
    ]
    for f in figures:
        cpu = ", ".join(f"{name} {ms:.1f}" for name, ms in f.cpu_ms.items())
        commands = "-"
        if f.operations is not None and f.operations_per_job is not None:
            each = ", ".join(f"{name} {n:.2f}" for name, n in f.operations.items() if n >= 0.005)
            commands = f"{f.store}: {f.operations_per_job:.1f} ({each})"
        cells = f"{_point(f.low)} | {_point(f.high)} | {_half(f.half)}"
        lines.append(f"| {f.system} | {cells} | {cpu} | {commands} |")
    by_name = {f.system: f for f in figures}
    peers = [by_name[name] for name in (SYNC, CELERY) if name in by_name]
    ours = [by_name[name] for name in (CLASSIFY, JOBS) if name in by_name]
    if peers and ours:
        lines += ["", _ratios(ours, peers)]
    return "\n".join(lines)


def _ratios(ours: Sequence[Figures], peers: Sequence[Figures]) -> str:
    head = " | ".join(f"/ {p.system}, c={c}" for p in peers for c in (LOW, HIGH))
    lines = [f"| req/s ratio | {head} |", "| --- |" + " ---: |" * (2 * len(peers))]
    for f in ours:
        cells = " | ".join(
            f"{mine.rate / theirs.rate:.2f}x" if theirs.rate else "-"
            for p in peers
            for mine, theirs in ((f.low, p.low), (f.high, p.high))
        )
        lines.append(f"| {f.system} | {cells} |")
    return "\n".join(lines)


def write_results(path: Path, header: str, results: str) -> None:
    """Replace the generated block of `path` (or append one); the rest of the page stays."""
    block = f"{BEGIN}\n{header}\n\n{results}\n{END}"
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    if BEGIN in text and END in text:
        before, rest = text.split(BEGIN, 1)
        text = before + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)


if __name__ == "__main__":
    raise SystemExit(main())
