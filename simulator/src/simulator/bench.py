"""End-to-end benchmark: the bare model ceiling against the whole pipeline, in one run.

    uv run simulator bench [--seconds 20] [--concurrency 16] [--write docs/benchmarks.md]

For classification (MobileNet v2) and detection (SSD MobileNet v1), on the same image:
1. ceiling: the bare interpreter loop, one thread per executor worker at the executor's
   interpreter threads (`executor_service.bench.model_rates`, in this process, while the
   platform is idle); in-process: the executor's prepare + invoke + decode on the image bytes;
2. saturated: `--concurrency` clients in a closed loop through the public API (POST /jobs with
   execute=true, until the result is readable with GET) for `--seconds`; throughput and latency
   count the jobs that finished after the first fifth of the run (the warm-up);
3. half load: an open loop at half the saturated throughput for `--seconds`; latency counts
   from each job's scheduled start, so queueing cannot hide.
CPU time per job of each platform process (and of this load generator) comes from /proc during
step 2. Needs the platform running (`make serve`), the asset cache and the executor package
(the workspace has it: `make bench`).
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from inference_client import ImageUpload, InferenceClient
from inference_common.assets import AssetStore
from inference_common.processes import cpu_seconds, listening_pids, port_of
from simulator.report import LatencySummary
from simulator.traffic import JobOutcome, JobPlan, Pacing, TrafficRun

MODELS: Final = {
    "classification": "mobilenet-v2-imagenet-quant",
    "detection": "ssd-mobilenet-v1-coco-quant",
}
IMAGE: Final = "images/cat_720p.jpg"
WARM_UP_SHARE: Final = 0.2
# Markers around the generated part of the results page; the prose around them is kept.
BEGIN: Final = "<!-- bench:begin (written by `simulator bench --write`) -->"
END: Final = "<!-- bench:end -->"


@dataclass(frozen=True)
class Load:
    """What one phase of traffic achieved."""

    done_per_s: float
    latency: LatencySummary  # seconds, of the DONE jobs counted
    jobs: int  # created in the phase
    not_done: int  # jobs of the phase that ended otherwise (failed, timed out, refused)


@dataclass(frozen=True)
class TaskFigures:
    task: str
    model: str
    ceiling: float  # invokes/s
    in_process: float  # jobs/s
    saturated: Load
    half_rate: float  # jobs/s offered at half load
    half: Load
    cpu_ms: dict[str, float]  # per DONE job of the saturated phase, by process

    @property
    def ratio(self) -> float:
        return self.saturated.done_per_s / self.ceiling


async def run_bench(
    client: InferenceClient, store: AssetStore, seconds: float, concurrency: int
) -> list[TaskFigures]:
    processes = _platform_processes(client.base_url)
    image = ImageUpload(Path(IMAGE).name, store.path_of(IMAGE).read_bytes(), "image/jpeg")
    figures = []
    for task, model in MODELS.items():
        ceiling, in_process = _model_rates(model, store, image.data, min(seconds, 8.0))
        await _phase(client, model, image, Pacing(concurrency=2), 2.0)  # warm caches, pools
        before = _cpu(processes)
        saturated, done = await _phase(
            client, model, image, Pacing(concurrency=concurrency), seconds
        )
        after = _cpu(processes)
        cpu_ms = {name: (after[name] - before[name]) * 1000 / max(done, 1) for name in before}
        half_rate = saturated.done_per_s / 2
        half, _ = await _phase(client, model, image, Pacing(rate=half_rate), seconds)
        figure = TaskFigures(task, model, ceiling, in_process, saturated, half_rate, half, cpu_ms)
        print(_line(figure), flush=True)
        figures.append(figure)
    return figures


def _model_rates(model: str, store: AssetStore, data: bytes, seconds: float) -> tuple[float, float]:
    # Imported here: the executor (LiteRT) is needed for the ceiling only.
    from executor_service.bench import model_rates
    from executor_service.settings import ExecutorSettings

    return model_rates(model, store, ExecutorSettings(), data, seconds)


async def _phase(
    client: InferenceClient, model: str, image: ImageUpload, pacing: Pacing, seconds: float
) -> tuple[Load, int]:
    """One phase of traffic; also returns how many jobs ended DONE in all."""
    most = int((pacing.rate or 1000.0) * seconds) + 1
    plans = [JobPlan(i, model, image) for i in range(most)]
    run = TrafficRun(client, plans, pacing, duration_s=seconds, result_timeout_s=60.0)
    outcomes = await run.run()
    return _load(outcomes, seconds), sum(o.status == "DONE" for o in outcomes)


def _load(outcomes: Sequence[JobOutcome], seconds: float) -> Load:
    start = seconds * WARM_UP_SHARE
    in_window = [
        o
        for o in outcomes
        if o.status == "DONE" and o.finished_at is not None and start <= o.finished_at <= seconds
    ]
    latencies = [o.latency_s for o in in_window if o.latency_s is not None]
    return Load(
        done_per_s=len(in_window) / (seconds - start),
        latency=LatencySummary.of(latencies),
        jobs=len(outcomes),
        not_done=sum(o.status != "DONE" for o in outcomes),
    )


def _platform_processes(api_url: str) -> dict[str, int]:
    """The processes of this machine that serve the platform, found by their ports."""
    from executor_service.settings import ExecutorSettings

    executor = ExecutorSettings()
    return listening_pids(
        {
            "job service": port_of(api_url, 80),
            "executor": executor.executor_http_port,
            "Kafka": port_of(executor.kafka_bootstrap_servers, 9092),
            "database": port_of(executor.mongodb_uri.get_secret_value(), 27017),
        }
    )


def _cpu(processes: dict[str, int]) -> dict[str, float]:
    found = {name: cpu_seconds(pid) for name, pid in processes.items()}
    return {**found, "load generator": time.process_time()}


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f}"


def _line(f: TaskFigures) -> str:
    s, h = f.saturated, f.half
    return (
        f"{f.task} ({f.model}): ceiling {f.ceiling:.0f} invokes/s, in-process "
        f"{f.in_process:.0f} jobs/s; pipeline saturated {s.done_per_s:.1f} jobs/s "
        f"({f.ratio:.0%} of the ceiling), "
        f"p50 {_ms(s.latency.p50)} ms, p99 {_ms(s.latency.p99)} ms; "
        f"at {f.half_rate:.1f} jobs/s p50 {_ms(h.latency.p50)} ms, p99 {_ms(h.latency.p99)} ms; "
        f"not done: {s.not_done} + {h.not_done}"
    )


def machine(seconds: float, concurrency: int) -> str:
    from executor_service.settings import ExecutorSettings

    executor = ExecutorSettings()
    return (
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {os.cpu_count()} CPUs "
        f"({platform.processor() or platform.machine()}), Python {platform.python_version()}; "
        f"executor workers={executor.executor_workers}, interpreter threads="
        f"{executor.executor_interpreter_threads}; image {Path(IMAGE).name}; "
        f"{seconds:g} s per phase, {concurrency} clients at saturation; "
        f"Kafka, the database, both services and this load generator on the same machine"
    )


def table(figures: Sequence[TaskFigures]) -> str:
    lines = [
        "| task | ceiling (invokes/s) | in-process (jobs/s) | pipeline saturated (jobs/s) "
        "| pipeline / ceiling | saturated p50 / p99 (ms) | half load (jobs/s) "
        "| half load p50 / p95 / p99 (ms) | CPU ms per job, by process |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for f in figures:
        s, h = f.saturated.latency, f.half.latency
        cpu = ", ".join(f"{name} {ms:.1f}" for name, ms in f.cpu_ms.items())
        lines.append(
            f"| {f.task} ({f.model}) | {f.ceiling:.0f} | {f.in_process:.0f} "
            f"| {f.saturated.done_per_s:.1f} | {f.ratio:.0%} | {_ms(s.p50)} / {_ms(s.p99)} "
            f"| {f.half_rate:.1f} | {_ms(h.p50)} / {_ms(h.p95)} / {_ms(h.p99)} | {cpu} |"
        )
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
