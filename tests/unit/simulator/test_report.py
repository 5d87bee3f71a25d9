import io
import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from rich.console import Console

from simulator.report import (
    REPORT_VERSION,
    LatencySummary,
    RunInfo,
    build_report,
    percentile,
    render_summary,
    write_json,
)
from simulator.traffic import JobOutcome


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 50) == 50
    assert percentile(values, 95) == 95
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile(values, 0.5) == 1


def test_percentile_of_few_values_is_a_value_that_occurred() -> None:
    values = [0.3, 0.1, 0.2]  # unsorted on purpose
    assert percentile(values, 50) == 0.2
    assert percentile(values, 95) == 0.3
    assert percentile([7.0], 99) == 7.0


def test_percentile_rejects_what_has_no_answer() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 0)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_latency_summary() -> None:
    summary = LatencySummary.of([0.1, 0.2, 0.3, 0.4])
    assert (summary.count, summary.p50, summary.p95, summary.p99, summary.max) == (
        4,
        0.2,
        0.4,
        0.4,
        0.4,
    )
    assert summary.mean == pytest.approx(0.25)
    empty = LatencySummary.of([]).to_json()
    assert empty == {"count": 0, "mean": None, "p50": None, "p95": None, "p99": None, "max": None}


def outcome(
    index: int,
    status: str,
    model: str = "m1",
    latency: float | None = None,
    error: str | None = None,
) -> JobOutcome:
    done_at = None if latency is None else 1.0 + latency
    job_id = None if status == "NOT_CREATED" else f"{index:032x}"
    return JobOutcome(
        index,
        model,
        "cat.bmp",
        job_id,
        status,
        1.0,
        done_at,
        error,
        None,
        "Egyptian cat 0.82" if status == "DONE" else None,
    )


def run_info(**overrides: object) -> RunInfo:
    values: dict[str, object] = {
        "api_url": "http://127.0.0.1:8080/api/v1/inference",
        "models": ["m1", "m2"],
        "pacing_mode": "concurrency",
        "pacing_value": 4.0,
        "jobs_requested": 6,
        "duration_limit_s": None,
        "started_at": datetime(2026, 11, 23, 12, 0, tzinfo=UTC),
        "finished_at": datetime(2026, 11, 23, 12, 0, 10, tzinfo=UTC),
        "elapsed_s": 10.0,
        "event_stream_connected": True,
        "request_retries": Counter({"HTTP 503": 2}),
    }
    values.update(overrides)
    return RunInfo(**values)  # type: ignore[arg-type]


OUTCOMES = [
    outcome(0, "DONE", "m1", 0.1),
    outcome(1, "DONE", "m2", 0.3),
    outcome(2, "DONE", "m1", 0.2),
    outcome(3, "FAILED", "m2", 0.05, error="job image_unreadable"),
    outcome(4, "NOT_CREATED", "m1", error="HTTP 503 service-unavailable"),
    outcome(5, "RUNNING", "m2", error="timeout"),
]


def test_report_counts_statuses_throughput_latency_and_errors() -> None:
    report = build_report(OUTCOMES, run_info())
    assert report["report_version"] == REPORT_VERSION
    assert report["jobs"] == {"requested": 6, "submitted": 6, "created": 5, "terminal": 4}
    assert report["statuses"] == {"DONE": 3, "FAILED": 1, "RUNNING": 1, "NOT_CREATED": 1}
    assert list(report["statuses"]) == ["DONE", "FAILED", "RUNNING", "NOT_CREATED"]
    assert report["throughput_per_s"] == {"submitted": 0.6, "terminal": 0.4, "done": 0.3}
    # Latency is submit-to-result of DONE jobs only: the FAILED job's 0.05 s is not in it.
    assert report["latency_s"] == {
        "count": 3,
        "mean": 0.2,
        "p50": 0.2,
        "p95": 0.3,
        "p99": 0.3,
        "max": 0.3,
    }
    assert report["by_model"]["m1"]["statuses"] == {"DONE": 2, "NOT_CREATED": 1}
    assert report["by_model"]["m1"]["latency_s"]["max"] == 0.2
    assert report["errors"] == {
        "job image_unreadable": 1,
        "HTTP 503 service-unavailable": 1,
        "timeout": 1,
    }
    assert report["request_retries"] == {"HTTP 503": 2}
    assert report["event_stream"] == {"connected": True, "errors": {}}


def test_report_has_every_documented_field_and_survives_json(tmp_path: Path) -> None:
    report = build_report(OUTCOMES, run_info(interrupted=True))
    path = tmp_path / "out" / "report.json"
    write_json(report, path)
    loaded = json.loads(path.read_text())
    assert loaded == report
    documented = (Path(__file__).parents[3] / "simulator" / "README.md").read_text()
    for key in loaded:
        assert f"`{key}`" in documented, f"{key} is not documented in simulator/README.md"
    for key in loaded["job_records"][0]:
        assert f"`{key}`" in documented, f"job_records.{key} is not documented"
    assert loaded["interrupted"] is True
    assert loaded["job_records"][3] == {
        "index": 3,
        "job_id": f"{3:032x}",
        "model": "m2",
        "image": "cat.bmp",
        "status": "FAILED",
        "submitted_at_s": 1.0,
        "finished_at_s": 1.05,
        "latency_s": 0.05,
        "result": None,
        "error": "job image_unreadable",
        "detail": None,
    }


def test_summary_shows_what_the_report_says() -> None:
    buffer = io.StringIO()
    render_summary(
        build_report(OUTCOMES, run_info(interrupted=True)), Console(file=buffer, width=120)
    )
    text = buffer.getvalue()
    assert "6 of 6 jobs submitted, 4 finished in 10.0 s" in text
    assert "interrupted: partial results" in text
    assert "NOT_CREATED" in text and "job image_unreadable" in text and "HTTP 503" in text
    assert "throughput: 0.60 submitted/s, 0.40 finished/s, 0.30 done/s" in text
    latency_row = next(line for line in text.splitlines() if line.strip("│ ").startswith("all"))
    cells = [cell.strip() for cell in latency_row.split("│")[2:8]]
    assert cells == ["3", "200", "200", "300", "300", "300"]  # count, then mean..max in ms


def test_summary_says_when_completion_came_from_polling() -> None:
    buffer = io.StringIO()
    report = build_report(OUTCOMES[:1], run_info(event_stream_connected=False))
    render_summary(report, Console(file=buffer, width=120))
    assert "event stream unavailable" in buffer.getvalue()
