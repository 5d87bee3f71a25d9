import pytest

from inference_service.domain.lifecycle import (
    CANCELLABLE,
    TERMINAL,
    IllegalTransition,
    JobStatus,
    can_move,
    check_cancel,
    check_execute,
    check_image_change,
    sources_of,
)

JOB = "0123456789abcdef0123456789abcdef"
S = JobStatus


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (S.NEW, S.QUEUED),
        (S.QUEUED, S.RUNNING),
        (S.QUEUED, S.DONE),  # a completed that overtook its started
        (S.RUNNING, S.DONE),
        (S.RUNNING, S.FAILED),
        (S.RUNNING, S.QUEUED),  # a new attempt after a missed deadline
        (S.NEW, S.CANCELLED),
        (S.QUEUED, S.CANCELLED),
        (S.RUNNING, S.CANCELLED),
    ],
)
def test_forward_moves_are_allowed(current: JobStatus, target: JobStatus) -> None:
    assert can_move(current, target)


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (S.DONE, S.RUNNING),  # a late started never overwrites DONE
        (S.RUNNING, S.RUNNING),
        (S.NEW, S.RUNNING),
        (S.NEW, S.DONE),
        (S.CANCELLED, S.QUEUED),
        (S.FAILED, S.DONE),
        (S.DONE, S.CANCELLED),
        (S.QUEUED, S.NEW),
    ],
)
def test_backward_and_skipping_moves_are_refused(current: JobStatus, target: JobStatus) -> None:
    assert not can_move(current, target)


def test_terminal_statuses_are_final() -> None:
    for terminal in TERMINAL:
        assert terminal.terminal
        assert not any(can_move(terminal, target) for target in JobStatus)


def test_nothing_moves_back_to_new() -> None:
    assert sources_of(S.NEW) == frozenset()


def test_execute_needs_a_new_job_with_its_image() -> None:
    check_execute(JOB, S.NEW, has_image=True)
    with pytest.raises(IllegalTransition, match="no image"):
        check_execute(JOB, S.NEW, has_image=False)
    for status in set(JobStatus) - {S.NEW}:
        with pytest.raises(IllegalTransition) as raised:
            check_execute(JOB, status, has_image=True)
        assert raised.value.current is status


def test_cancel_only_before_the_end() -> None:
    for status in CANCELLABLE:
        check_cancel(JOB, status)
    for status in TERMINAL:
        with pytest.raises(IllegalTransition):
            check_cancel(JOB, status)


def test_the_image_changes_only_while_new() -> None:
    check_image_change(JOB, S.NEW)
    with pytest.raises(IllegalTransition):
        check_image_change(JOB, S.QUEUED)
