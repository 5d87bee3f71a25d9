"""The run's report: built once as a plain dict, printed as a summary, written as JSON.

The summary and `--json` come from the same dict, so they cannot disagree. Its fields,
`report_version` 1 (simulator/README.md has the long form):

- `report_version`, `api_url`, `started_at` / `finished_at` (RFC 3339 UTC), `elapsed_s`
- `interrupted`: Ctrl-C cut the run short, the numbers are partial
- `pacing`: `{"mode": "concurrency" | "rate", "value": ...}`; `duration_limit_s`; `models`
- `jobs`: `requested`, `submitted` (creates attempted), `created`, `terminal`
- `statuses`: jobs by final (or, when unfinished, last seen) status; `NOT_CREATED` when
  the create failed
- `throughput_per_s`: `submitted`, `terminal`, `done` per second of `elapsed_s`
- `latency_s`: submit-to-result seconds of DONE jobs: `count`, `mean`, `p50`, `p95`,
  `p99`, `max` (nearest rank; null without DONE jobs)
- `by_model`: `{model: {"statuses": ..., "latency_s": ...}}`
- `errors`: jobs by error kind (`HTTP <status> <problem>`, `unreachable`,
  `transport <exception>`, `unexpected response`, `job <error code>`, `timeout`,
  `interrupted`)
- `request_retries`, `request_errors`: retried requests and failed polls, by kind
- `event_stream`: `connected` (was `GET /events` ever open) and its `errors`
- `job_records`: per job `index`, `job_id`, `model`, `image`, `status`,
  `submitted_at_s`, `finished_at_s`, `latency_s`, `result`, `error`, `detail`
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from simulator.traffic import JobOutcome

REPORT_VERSION: Final = 1
STATUS_ORDER: Final = ("DONE", "FAILED", "CANCELLED", "RUNNING", "QUEUED", "NEW", "NOT_CREATED")


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest rank: the smallest value with at least q% of the values at or below it.

    Always a latency some job really had, unlike interpolation; p100 is the maximum.
    """
    if not values:
        raise ValueError("percentile of no values")
    if not 0 < q <= 100:
        raise ValueError(f"q must be in (0, 100], not {q}")
    ordered = sorted(values)
    rank = math.ceil(q / 100 * len(ordered))
    return ordered[rank - 1]


@dataclass(frozen=True)
class LatencySummary:
    count: int
    mean: float | None
    p50: float | None
    p95: float | None
    p99: float | None
    max: float | None

    @classmethod
    def of(cls, values: Sequence[float]) -> LatencySummary:
        if not values:
            return cls(0, None, None, None, None, None)
        return cls(
            count=len(values),
            mean=sum(values) / len(values),
            p50=percentile(values, 50),
            p95=percentile(values, 95),
            p99=percentile(values, 99),
            max=max(values),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "count": self.count,
            **{name: _round(getattr(self, name)) for name in ("mean", "p50", "p95", "p99", "max")},
        }


@dataclass(frozen=True)
class RunInfo:
    """What the run was asked to do and how it went, besides the jobs themselves."""

    api_url: str
    models: Sequence[str]
    pacing_mode: str
    pacing_value: float
    jobs_requested: int
    duration_limit_s: float | None
    started_at: datetime
    finished_at: datetime
    elapsed_s: float
    interrupted: bool = False
    event_stream_connected: bool = False
    event_stream_errors: Counter[str] = field(default_factory=Counter)
    request_retries: Counter[str] = field(default_factory=Counter)
    request_errors: Counter[str] = field(default_factory=Counter)


def done_latencies(outcomes: Iterable[JobOutcome]) -> list[float]:
    """Submit-to-result times of the jobs whose result was read."""
    return [
        o.latency_s
        for o in outcomes
        if o.status == "DONE" and o.error is None and o.latency_s is not None
    ]


def build_report(outcomes: Sequence[JobOutcome], run: RunInfo) -> dict[str, Any]:
    elapsed = max(run.elapsed_s, 1e-9)
    statuses = Counter(o.status for o in outcomes)
    terminal = [o for o in outcomes if o.terminal]
    by_model: dict[str, dict[str, Any]] = {}
    for model in sorted({o.model for o in outcomes}):
        mine = [o for o in outcomes if o.model == model]
        by_model[model] = {
            "statuses": _ordered(Counter(o.status for o in mine)),
            "latency_s": LatencySummary.of(done_latencies(mine)).to_json(),
        }
    return {
        "report_version": REPORT_VERSION,
        "api_url": run.api_url,
        "started_at": run.started_at.isoformat(),
        "finished_at": run.finished_at.isoformat(),
        "elapsed_s": _round(run.elapsed_s),
        "interrupted": run.interrupted,
        "pacing": {"mode": run.pacing_mode, "value": run.pacing_value},
        "duration_limit_s": run.duration_limit_s,
        "models": list(run.models),
        "jobs": {
            "requested": run.jobs_requested,
            "submitted": len(outcomes),
            "created": sum(1 for o in outcomes if o.job_id is not None),
            "terminal": len(terminal),
        },
        "statuses": _ordered(statuses),
        "throughput_per_s": {
            "submitted": _round(len(outcomes) / elapsed),
            "terminal": _round(len(terminal) / elapsed),
            "done": _round(statuses["DONE"] / elapsed),
        },
        "latency_s": LatencySummary.of(done_latencies(outcomes)).to_json(),
        "by_model": by_model,
        "errors": dict(Counter(o.error for o in outcomes if o.error).most_common()),
        "request_retries": dict(run.request_retries.most_common()),
        "request_errors": dict(run.request_errors.most_common()),
        "event_stream": {
            "connected": run.event_stream_connected,
            "errors": dict(run.event_stream_errors.most_common()),
        },
        "job_records": [_job_record(o) for o in sorted(outcomes, key=lambda o: o.index)],
    }


def _job_record(outcome: JobOutcome) -> dict[str, Any]:
    return {
        "index": outcome.index,
        "job_id": outcome.job_id,
        "model": outcome.model,
        "image": outcome.image,
        "status": outcome.status,
        "submitted_at_s": _round(outcome.submitted_at),
        "finished_at_s": _round(outcome.finished_at),
        "latency_s": _round(outcome.latency_s),
        "result": outcome.result,
        "error": outcome.error,
        "detail": outcome.detail,
    }


def _ordered(counts: Counter[str]) -> dict[str, int]:
    known = [s for s in STATUS_ORDER if counts[s]]
    others = sorted(s for s in counts if s not in STATUS_ORDER)
    return {s: counts[s] for s in known + others}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def write_json(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")


def render_summary(report: dict[str, Any], console: Console) -> None:
    jobs = report["jobs"]
    headline = (
        f"{jobs['submitted']} of {jobs['requested']} jobs submitted, {jobs['terminal']} finished "
        f"in {report['elapsed_s']:.1f} s against {escape(report['api_url'])}"
    )
    if report["interrupted"]:
        headline += " [bold yellow](interrupted: partial results)[/]"
    console.print(headline, soft_wrap=True)
    console.print(_status_table(report))
    console.print(_latency_table(report))
    throughput = report["throughput_per_s"]
    console.print(
        f"throughput: {throughput['submitted']:.2f} submitted/s, "
        f"{throughput['terminal']:.2f} finished/s, {throughput['done']:.2f} done/s",
        soft_wrap=True,
    )
    for title, key in (("errors", "errors"), ("retried requests", "request_retries")):
        if report[key]:
            console.print(_count_table(title, report[key]))
    stream = report["event_stream"]
    if not stream["connected"]:
        console.print("[yellow]event stream unavailable: completion was learned by polling[/]")


def _status_table(report: dict[str, Any]) -> Table:
    table = Table(title="jobs by final status", title_justify="left")
    table.add_column("status")
    table.add_column("jobs", justify="right")
    for model in report["models"]:
        table.add_column(model, justify="right")
    for status, count in report["statuses"].items():
        per_model = [
            str(report["by_model"].get(m, {}).get("statuses", {}).get(status, 0))
            for m in report["models"]
        ]
        table.add_row(status, str(count), *per_model)
    return table


def _latency_table(report: dict[str, Any]) -> Table:
    table = Table(title="submit-to-result latency of DONE jobs (ms)", title_justify="left")
    columns = ("count", "mean", "p50", "p95", "p99", "max")
    table.add_column("model")
    for name in columns:
        table.add_column(name, justify="right")
    rows = [("all", report["latency_s"])] + [
        (model, entry["latency_s"]) for model, entry in report["by_model"].items()
    ]
    for label, stats in rows:
        table.add_row(label, str(stats["count"]), *(_ms(stats[n]) for n in columns[1:]))
    return table


def _count_table(title: str, counts: dict[str, int]) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("kind")
    table.add_column("count", justify="right")
    for kind, count in counts.items():
        table.add_row(kind, str(count))
    return table


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f}"
