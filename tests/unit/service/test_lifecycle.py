"""The one lifecycle table: which action may move a job from which status to which."""

from __future__ import annotations

import pytest

from inference_service.domain.lifecycle import (
    MOVES,
    TERMINAL,
    Action,
    IllegalTransition,
    JobStatus,
    allows,
    require,
    target_of,
)

S = JobStatus
JOB = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    ("action", "current", "target"),
    [
        (Action.EXECUTE, S.NEW, S.QUEUED),
        (Action.START, S.QUEUED, S.RUNNING),
        (Action.COMPLETE, S.QUEUED, S.DONE),  # a completed that overtook its started
        (Action.COMPLETE, S.RUNNING, S.DONE),
        (Action.FAIL, S.RUNNING, S.FAILED),
        (Action.RETRY, S.RUNNING, S.QUEUED),  # a new attempt after a missed deadline
        (Action.EXPIRE, S.QUEUED, S.FAILED),
        (Action.CANCEL, S.NEW, S.CANCELLED),
        (Action.CANCEL, S.RUNNING, S.CANCELLED),
        (Action.CHANGE_IMAGE, S.NEW, S.NEW),
        (Action.DELETE, S.DONE, S.DONE),
    ],
)
def test_forward_moves_are_allowed(action: Action, current: JobStatus, target: JobStatus) -> None:
    assert allows(action, current)
    assert target_of(action, current) is target


@pytest.mark.parametrize(
    ("action", "current"),
    [
        (Action.START, S.DONE),  # a late started never overwrites DONE
        (Action.START, S.RUNNING),
        (Action.EXECUTE, S.QUEUED),
        (Action.COMPLETE, S.NEW),
        (Action.CANCEL, S.DONE),
        (Action.CHANGE_IMAGE, S.QUEUED),
    ],
)
def test_backward_or_sideways_moves_are_refused(action: Action, current: JobStatus) -> None:
    assert not allows(action, current)
    with pytest.raises(IllegalTransition):
        require(JOB, action, current)


def test_nothing_leaves_a_terminal_status() -> None:
    # Only a delete and retention's purge act on a finished job, and both keep its status.
    for action, move in MOVES.items():
        if action in {Action.DELETE, Action.PURGE}:
            assert move.sources >= TERMINAL and move.target is None, action
        else:
            assert not move.sources & TERMINAL, action


def test_refusals_say_why() -> None:
    with pytest.raises(IllegalTransition, match="cannot cancel a job that is DONE") as raised:
        require(JOB, Action.CANCEL, S.DONE)
    assert raised.value.current is S.DONE and raised.value.job_id == JOB
    with pytest.raises(IllegalTransition, match="only change while the job is NEW"):
        require(JOB, Action.CHANGE_IMAGE, S.RUNNING)
