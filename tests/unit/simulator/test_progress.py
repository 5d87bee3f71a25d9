import io

from rich.console import Console

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
