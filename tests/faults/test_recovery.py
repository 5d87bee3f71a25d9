"""The per-fault recovery figures, on made-up outcomes: what counts as new and as the backlog."""

from __future__ import annotations

from simulator.traffic import JobOutcome
from tests.faults.runner import Recovery, Stages, recovery_after, stages_after


def outcome(submitted_at: float, finished_at: float | None) -> JobOutcome:
    return JobOutcome(0, "model", "image", "job", "DONE", submitted_at, finished_at)


def test_first_new_job_and_backlog_are_timed_from_the_restart() -> None:
    outcomes = [
        outcome(1.0, 2.0),  # done before the fault
        outcome(9.0, 22.0),  # the backlog: submitted before the restart at 10 s
        outcome(9.5, 18.0),
        outcome(11.0, 16.0),  # the first new one done, though not the first submitted
        outcome(10.5, 17.0),
    ]

    recovery = recovery_after(10.0, outcomes)

    assert recovery == Recovery(first_new_done_s=6.0, drained_s=12.0)
    assert recovery.within_goal
    assert not recovery_after(5.0, outcomes).within_goal  # drained 17 s after a restart at 5


def test_a_backlog_job_never_done_leaves_the_backlog_undrained() -> None:
    recovery = recovery_after(10.0, [outcome(9.0, None), outcome(11.0, 12.0)])

    assert recovery == Recovery(first_new_done_s=2.0, drained_s=None)
    assert not recovery.within_goal


def test_no_backlog_drains_at_the_restart_and_no_new_job_is_not_a_figure() -> None:
    assert recovery_after(10.0, [outcome(12.0, None)]) == Recovery(None, 0.0)


def test_what_the_next_fault_delays_is_not_this_faults_figure() -> None:
    outcomes = [outcome(9.0, 30.0), outcome(11.0, 26.0), outcome(21.0, 22.0)]

    assert recovery_after(10.0, outcomes, until=20.0) == Recovery(None, None)
    assert recovery_after(10.0, outcomes, until=40.0) == Recovery(12.0, 20.0)


def test_the_stages_say_where_the_seconds_of_a_recovery_went() -> None:
    outcomes = [
        JobOutcome(0, "model", "image", "old", "DONE", 1.0, 2.0),  # long done: not late
        JobOutcome(1, "model", "image", "backlog", "DONE", 9.0, 22.0),
        JobOutcome(2, "model", "image", "new", "DONE", 11.0, 16.0),
    ]
    stages = {
        "old": Stages(1.1, 1.5, 1.8),
        "backlog": Stages(9.1, 20.0, 21.0),
        "new": Stages(12.0, 14.0, 15.0),
    }

    assert stages_after(10.0, outcomes, stages) == (
        "first new job: created 2.0, executed 4.0, folded 5.0, seen 6.0; "
        "backlog, last: created 0.0, executed 10.0, folded 11.0, seen 12.0"
    )
    assert stages_after(10.0, outcomes, stages, until=20.5) == (
        "first new job: created 2.0, executed 4.0, folded 5.0, seen 6.0; "
        "backlog, last: created 0.0, executed 10.0, folded n/a, seen n/a"
    )
