"""The job lifecycle: the one table of which action may move a job from which status to which.

`Job` (domain/job.py) asks this table before every change; nothing else decides a move.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final


class JobStatus(StrEnum):
    NEW = "NEW"
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    DONE = "DONE"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL: Final = frozenset({JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED})
ACTIVE: Final = frozenset({JobStatus.QUEUED, JobStatus.RUNNING})
CANCELLABLE: Final = frozenset({JobStatus.NEW, JobStatus.QUEUED, JobStatus.RUNNING})
EVERY: Final = frozenset(JobStatus)


class Action(StrEnum):
    """What can happen to a job: the API's requests, the executors' results, the sweepers."""

    EXECUTE = "execute"
    CHANGE_IMAGE = "change the image of"
    CANCEL = "cancel"
    DELETE = "delete"
    START = "start"
    COMPLETE = "complete"
    FAIL = "fail"
    RETRY = "retry"
    EXPIRE = "expire"
    PURGE = "purge"


@dataclass(frozen=True)
class Move:
    sources: frozenset[JobStatus]
    # None: the status stays as it is (an image change, a delete of a finished job).
    target: JobStatus | None


# A late or duplicate event can never move a job backwards: QUEUED → DONE is allowed (a
# `completed` that overtook its `started`), RUNNING → QUEUED only as a new attempt.
MOVES: Final[dict[Action, Move]] = {
    Action.EXECUTE: Move(frozenset({JobStatus.NEW}), JobStatus.QUEUED),
    Action.CHANGE_IMAGE: Move(frozenset({JobStatus.NEW}), None),
    Action.CANCEL: Move(CANCELLABLE, JobStatus.CANCELLED),
    Action.DELETE: Move(EVERY, None),
    Action.START: Move(frozenset({JobStatus.QUEUED}), JobStatus.RUNNING),
    Action.COMPLETE: Move(ACTIVE, JobStatus.DONE),
    Action.FAIL: Move(ACTIVE, JobStatus.FAILED),
    Action.RETRY: Move(ACTIVE, JobStatus.QUEUED),
    Action.EXPIRE: Move(ACTIVE, JobStatus.FAILED),
    # Retention removes a finished job's stored content; its status stays.
    Action.PURGE: Move(TERMINAL, None),
}


def allows(action: Action, current: JobStatus) -> bool:
    return current in MOVES[action].sources


def target_of(action: Action, current: JobStatus) -> JobStatus:
    return MOVES[action].target or current


class IllegalTransition(Exception):
    """The job's status does not allow the request; the API answers 409."""

    def __init__(self, job_id: str, current: JobStatus, action: str, detail: str | None = None):
        self.job_id = job_id
        self.current = current
        self.action = action
        super().__init__(detail or f"cannot {action} a job that is {current.value}")


_REFUSALS: Final = {
    Action.CHANGE_IMAGE: "the image can only change while the job is NEW",
}


def require(job_id: str, action: Action, current: JobStatus) -> None:
    """Refuse a request the table does not allow (IllegalTransition, 409)."""
    if not allows(action, current):
        raise IllegalTransition(job_id, current, action.value, _REFUSALS.get(action))
