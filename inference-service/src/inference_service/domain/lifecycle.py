"""The job lifecycle: which status may follow which, and why a request is refused."""

from __future__ import annotations

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

# Target status → the statuses it may be reached from. Every write is a compare-and-set on
# these, so a late or duplicate event can never move a job backwards: QUEUED → DONE is allowed
# (a `completed` that overtook its `started`), RUNNING → QUEUED only as a new attempt.
_SOURCES: Final[dict[JobStatus, frozenset[JobStatus]]] = {
    JobStatus.NEW: frozenset(),
    JobStatus.QUEUED: frozenset({JobStatus.NEW, JobStatus.QUEUED, JobStatus.RUNNING}),
    JobStatus.RUNNING: frozenset({JobStatus.QUEUED}),
    JobStatus.DONE: ACTIVE,
    JobStatus.FAILED: ACTIVE,
    JobStatus.CANCELLED: CANCELLABLE,
}


def sources_of(target: JobStatus) -> frozenset[JobStatus]:
    return _SOURCES[target]


def can_move(current: JobStatus, target: JobStatus) -> bool:
    return current in _SOURCES[target]


class IllegalTransition(Exception):
    """The job's status does not allow the request; the API answers 409."""

    def __init__(self, job_id: str, current: JobStatus, action: str, detail: str | None = None):
        self.job_id = job_id
        self.current = current
        self.action = action
        super().__init__(detail or f"cannot {action} a job that is {current.value}")


def check_execute(job_id: str, current: JobStatus, has_image: bool) -> None:
    """Only a NEW job with its image can be executed (a retry is the sweeper's business)."""
    if current is not JobStatus.NEW:
        raise IllegalTransition(job_id, current, "execute")
    if not has_image:
        raise IllegalTransition(
            job_id, current, "execute", "the job has no image yet: PUT /jobs/{job_id}/image first"
        )


def check_cancel(job_id: str, current: JobStatus) -> None:
    if current not in CANCELLABLE:
        raise IllegalTransition(job_id, current, "cancel")


def check_image_change(job_id: str, current: JobStatus) -> None:
    if current is not JobStatus.NEW:
        raise IllegalTransition(
            job_id, current, "change the image of", "the image can only change while the job is NEW"
        )
