"""The data of `job.execution_requested.v1`, checked against its JSON Schema in two steps.

The schema is openapi/asyncapi.yaml's (`inference_common.contracts`), the one the job service
publishes by. Without a valid execution (job id, execution id, attempt: the `Execution`
schema) no `job.failed.v1` can be written, so such a message goes to the dead-letter topic;
with one, anything else wrong in the request fails the execution as `invalid_request`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from executor_service.errors import ErrorCode, JobFailure
from inference_common.contracts import EventSchemas
from inference_common.events import EventType


@dataclass(frozen=True)
class Execution:
    job_id: str
    execution_id: str
    attempt: int

    def ids(self) -> dict[str, Any]:
        """The fields every result event starts with."""
        return {"job_id": self.job_id, "execution_id": self.execution_id, "attempt": self.attempt}


@dataclass(frozen=True)
class ImageRef:
    uri: str
    sha256: str
    size: int
    media_type: str
    width: int
    height: int


@dataclass(frozen=True)
class ModelOptions:
    top_k: int | None = None
    score_threshold: float | None = None


@dataclass(frozen=True)
class ExecutionRequest(Execution):
    model: str
    task: str  # classification | object_detection | describe
    options: ModelOptions
    image: ImageRef
    deadline: datetime


def parse_execution(data: dict[str, Any], schemas: EventSchemas) -> Execution:
    """ValueError when even the ids are unusable (the caller dead-letters the message)."""
    problems = schemas.problems("Execution", data)
    if problems:
        raise ValueError(f"execution_requested without valid ids: {'; '.join(problems)}")
    return _execution(data)


def parse_request(data: dict[str, Any], subject: str, schemas: EventSchemas) -> ExecutionRequest:
    """JobFailure(invalid_request) for anything the schema or the subject refuses."""
    problems = schemas.problems(EventType.EXECUTION_REQUESTED, data)
    if problems:
        raise JobFailure(ErrorCode.INVALID_REQUEST, f"invalid request: {'; '.join(problems)}")
    if data["job_id"] != subject:
        raise JobFailure(
            ErrorCode.INVALID_REQUEST,
            f"data.job_id {data['job_id']} differs from the event subject {subject}",
        )
    try:
        # The schema checked RFC 3339, offset included; Python reads all but leap seconds.
        deadline = datetime.fromisoformat(data["deadline"])
    except ValueError as exc:
        raise JobFailure(ErrorCode.INVALID_REQUEST, f"invalid request: deadline: {exc}") from exc
    return ExecutionRequest(
        **_execution(data).ids(),
        model=data["model"],
        task=data["task"],
        options=ModelOptions(**data["options"]),
        image=ImageRef(**data["image"]),
        deadline=deadline,
    )


def is_past(deadline: datetime, now: datetime) -> bool:
    return now > deadline


def _execution(data: dict[str, Any]) -> Execution:
    # The schema allows 1.0 for an integer; the result events carry it as 1.
    return Execution(data["job_id"], data["execution_id"], int(data["attempt"]))
