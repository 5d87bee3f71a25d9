import io

from rich.console import Console

from inference_client import RetryNotice
from simulator.progress import ProgressBar
from simulator.traffic import JobOutcome


def test_progress_counts_jobs_in_flight_and_how_they_ended() -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=120)
    done = JobOutcome(0, "m", "a.jpg", "j0", "DONE", 0.0, 1.0)
    failed = JobOutcome(1, "m", "b.jpg", "j1", "FAILED", 0.0, 1.0, "job model_error")
    lost = JobOutcome(2, "m", "c.jpg", None, "NOT_CREATED", 0.0, None, "unreachable")
    with ProgressBar(3, console) as bar:
        for outcome in (done, failed, lost):
            bar.submitted(outcome)
        assert bar.counts() == "in flight 3"
        for outcome in (done, failed, lost):
            bar.finished(outcome)
        # Unfinished jobs are counted by what went wrong, finished ones by their status.
        assert bar.counts() == "in flight 0 · DONE 1 · FAILED 1 · unreachable 1"
    assert "3/3" in screen.getvalue()


def test_a_disabled_progress_bar_prints_nothing() -> None:
    screen = io.StringIO()
    with ProgressBar(1, Console(file=screen, force_terminal=True), enabled=False) as bar:
        bar.submitted(JobOutcome(0, "m", "a.jpg"))
    assert screen.getvalue() == ""


def test_the_clients_retries_show_on_the_progress_line_until_it_recovers() -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=160)
    with ProgressBar(2, console) as bar:
        bar.submitted(JobOutcome(0, "m", "a.jpg"))
        bar.retry_notice(RetryNotice("job service unreachable", 12.4, 1.0))
        assert bar.counts() == "job service unreachable, retrying (12 s) · in flight 1"
        bar.retry_notice(RetryNotice("", 15.0))
        assert bar.counts() == "in flight 1"


def test_without_a_bar_retry_notices_are_lines_a_few_seconds_apart() -> None:
    screen, now = io.StringIO(), [0.0]
    console = Console(file=screen, width=160)
    with ProgressBar(1, console, enabled=False, clock=lambda: now[0]) as bar:
        for second in range(13):
            now[0] = float(second)
            bar.retry_notice(RetryNotice("job service unreachable", float(second), 1.0))
        bar.retry_notice(RetryNotice("", 13.0))
    assert screen.getvalue().splitlines() == [
        "job service unreachable, retrying (0 s)",
        "job service unreachable, retrying (5 s)",
        "job service unreachable, retrying (10 s)",
        "job service answers again after 13 s",
    ]


def test_a_batch_counts_files_planned_late_and_skipped_ones() -> None:
    screen = io.StringIO()
    with ProgressBar(0, Console(file=screen, force_terminal=True, width=120), unit="files") as bar:
        bar.planned(3)
        for how in ("DONE", "skipped", "REJECTED"):
            bar.started()
            bar.done(how)
        assert bar.counts() == "in flight 0 · DONE 1 · REJECTED 1 · skipped 1"
    assert "files" in screen.getvalue() and "3/3" in screen.getvalue()
