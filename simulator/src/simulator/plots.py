"""`--plot DIR`: a latency histogram and throughput over time, as PNG files.

Drawn on matplotlib's Agg canvas through `Figure` directly: no pyplot, no display needed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

MAX_BUCKETS: Final = 120


def bucket_width(elapsed_s: float) -> float:
    """1 s buckets, widened for long runs so a plot has at most MAX_BUCKETS bars."""
    return max(1.0, math.ceil(elapsed_s / MAX_BUCKETS))


def per_second(times: Sequence[float], width: float, buckets: int) -> list[float]:
    """Events per second in each bucket of `width` seconds."""
    counts = [0] * buckets
    for t in times:
        counts[min(int(t // width), buckets - 1)] += 1
    return [c / width for c in counts]


def write_plots(report: dict[str, Any], directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    return [_latency_histogram(report, directory), _throughput(report, directory)]


def _latency_histogram(report: dict[str, Any], directory: Path) -> Path:
    figure = Figure(figsize=(8, 4.5), layout="constrained")
    axes = figure.add_subplot()
    by_model: dict[str, list[float]] = {}
    for record in report["job_records"]:
        if (
            record["status"] == "DONE"
            and record["error"] is None
            and record["latency_s"] is not None
        ):
            by_model.setdefault(record["model"], []).append(record["latency_s"] * 1000)
    if by_model:
        axes.hist(list(by_model.values()), bins=40, stacked=True, label=list(by_model))
        for name, style in (("p50", "-"), ("p95", "--"), ("p99", ":")):
            value_ms = report["latency_s"][name] * 1000
            axes.axvline(
                value_ms,
                linestyle=style,
                linewidth=1,
                color="black",
                label=f"{name} {value_ms:.0f} ms",
            )
        axes.legend(fontsize="small")
    else:
        axes.text(0.5, 0.5, "no DONE jobs", ha="center", va="center", transform=axes.transAxes)
    axes.set_xlabel("submit-to-result latency (ms)")
    axes.set_ylabel("jobs")
    axes.set_title(f"Latency of {report['latency_s']['count']} DONE jobs")
    return _save(figure, directory / "latency.png")


def _throughput(report: dict[str, Any], directory: Path) -> Path:
    figure = Figure(figsize=(8, 4.5), layout="constrained")
    axes = figure.add_subplot()
    records = report["job_records"]
    elapsed = max(float(report["elapsed_s"] or 0), 1.0)
    width = bucket_width(elapsed)
    buckets = max(1, math.ceil(elapsed / width))
    edges = [i * width for i in range(buckets + 1)]
    submitted = [r["submitted_at_s"] for r in records if r["submitted_at_s"] is not None]
    finished = [r["finished_at_s"] for r in records if r["finished_at_s"] is not None]
    axes.stairs(per_second(submitted, width, buckets), edges, label="submitted")
    axes.stairs(per_second(finished, width, buckets), edges, label="finished")
    axes.set_xlabel(f"seconds since start ({width:g} s buckets)")
    axes.set_ylabel("jobs per second")
    axes.set_title("Throughput over time")
    axes.legend(fontsize="small")
    return _save(figure, directory / "throughput.png")


def _save(figure: Figure, path: Path) -> Path:
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=100)
    return path
