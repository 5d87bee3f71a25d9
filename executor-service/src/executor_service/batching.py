"""Decisions that look at a whole consumed batch at once."""

from __future__ import annotations

from collections.abc import Sequence

from inference_common.events import Envelope, EventType

# A purge comes only after a job finished: nothing left to run either.
_ENDS_JOB = frozenset({EventType.CANCELLED, EventType.DELETED, EventType.PURGED})


def superseded_requests(batch: Sequence[Envelope | None]) -> set[int]:
    """Positions of execution requests whose job is cancelled, deleted or purged later in the
    batch.

    A job's events share a partition, so "later in the batch" is "later in the job's life":
    running such an execution would only produce a result the job service throws away.
    """
    ended: set[str] = set()
    superseded: set[int] = set()
    for position in range(len(batch) - 1, -1, -1):
        envelope = batch[position]
        if envelope is None:
            continue
        if envelope.type in _ENDS_JOB:
            ended.add(envelope.subject)
        elif envelope.type == EventType.EXECUTION_REQUESTED and envelope.subject in ended:
            superseded.add(position)
    return superseded
