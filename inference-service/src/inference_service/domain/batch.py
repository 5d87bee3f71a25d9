"""A batch: many images sent as one request, one job per image, counted and read together.

The batch keeps which job each file became (or why it became none) and, as they are learned,
the final statuses of its jobs: a terminal status never changes, so a batch read asks the
job store only about the jobs not yet known to be finished.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Final

from inference_service.domain.lifecycle import JobStatus

# Counted beside the job statuses: a file that made no job, a job deleted on its own.
REJECTED: Final = "REJECTED"
DELETED: Final = "DELETED"
COUNTED: Final = (*(status.value for status in JobStatus), REJECTED, DELETED)


@dataclass(frozen=True)
class FileProblem:
    """Why a file made no job, as the API tells it (problem+json)."""

    status: int
    slug: str
    detail: str


@dataclass(frozen=True)
class BatchFile:
    index: int
    name: str
    job_id: str | None = None
    problem: FileProblem | None = None


@dataclass(frozen=True)
class Batch:
    id: str
    owner: str
    model: str
    options: dict[str, Any]
    created_at: datetime
    files: tuple[BatchFile, ...]
    fingerprint: str
    idempotency_key: str | None = None
    # job id -> its final status (DONE, FAILED, CANCELLED) or DELETED, once seen so.
    settled: Mapping[str, str] = field(default_factory=dict)

    @property
    def job_ids(self) -> list[str]:
        return [file.job_id for file in self.files if file.job_id is not None]

    def unsettled(self) -> list[str]:
        return [job_id for job_id in self.job_ids if job_id not in self.settled]

    def progress(self, statuses: Mapping[str, str]) -> BatchProgress:
        """Counted from the settled statuses plus `statuses` (job id -> status, DELETED when
        the job is gone) of the jobs not yet settled."""
        counts = dict.fromkeys(COUNTED, 0)
        for file in self.files:
            if file.job_id is None:
                counts[REJECTED] += 1
            else:
                status = self.settled.get(file.job_id) or statuses.get(file.job_id, DELETED)
                counts[status] += 1
        return BatchProgress(self, counts)

    def newly_settled(self, statuses: Mapping[str, str]) -> dict[str, str]:
        """The statuses just read that are final and not yet recorded."""
        return {
            job_id: status
            for job_id, status in statuses.items()
            if job_id not in self.settled and is_final(status)
        }

    def with_settled(self, more: Mapping[str, str]) -> Batch:
        return replace(self, settled={**self.settled, **more})


@dataclass(frozen=True)
class BatchProgress:
    batch: Batch
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return len(self.batch.files)

    @property
    def done(self) -> int:
        return sum(n for status, n in self.counts.items() if is_final(status))

    @property
    def finished(self) -> bool:
        return self.done == self.total

    @property
    def share(self) -> float:
        return self.done / self.total if self.total else 1.0


def is_final(status: str) -> bool:
    return status in (REJECTED, DELETED) or JobStatus(status).terminal


def batch_id_for(owner: str, key: str | None) -> str:
    """With an Idempotency-Key the id derives from it, so a retry finds the same batch."""
    if key is None:
        return uuid.uuid4().hex
    return hashlib.sha256(f"batch\0{owner}\0{key}".encode()).hexdigest()[:32]


def file_key(batch_key: str, index: int, name: str) -> str:
    """The Idempotency-Key of a file's job: a retried upload finds the job it created."""
    digest = hashlib.sha256(f"{batch_key}\0{index}\0{name}".encode()).hexdigest()
    return f"batch:{digest}"


def batch_fingerprint(model: str, options: dict[str, Any]) -> str:
    canonical = json.dumps({"model": model, "options": options}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()
