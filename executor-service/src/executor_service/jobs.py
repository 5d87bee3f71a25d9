"""The data of `job.execution_requested.v1`, checked in two steps.

Without a valid execution (job id, execution id, attempt) no `job.failed.v1` can be written,
so such a message goes to the dead-letter topic; with one, anything else wrong in the request
fails the execution as `invalid_request`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from executor_service.errors import ErrorCode, JobFailure
from inference_common.image_stores.keys import IMAGE_URI_PATTERN

_HEX32 = r"^[0-9a-f]{32}$"


class Execution(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    job_id: str = Field(pattern=_HEX32)
    execution_id: str = Field(pattern=_HEX32)
    attempt: int = Field(ge=1)

    def ids(self) -> dict[str, Any]:
        """The fields every result event starts with."""
        return {"job_id": self.job_id, "execution_id": self.execution_id, "attempt": self.attempt}


class ImageRef(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    uri: str = Field(pattern=IMAGE_URI_PATTERN)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=1)
    media_type: str = Field(pattern=r"^image/")
    width: int = Field(ge=1)
    height: int = Field(ge=1)


class ModelOptions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    top_k: int | None = Field(default=None, ge=1, le=1001)
    score_threshold: float | None = Field(default=None, ge=0, le=1)


class ExecutionRequest(Execution):
    model: str
    task: Literal["classification", "object_detection"]
    options: ModelOptions
    image: ImageRef
    deadline: AwareDatetime


def parse_execution(data: dict[str, Any]) -> Execution:
    """ValueError when even the ids are unusable (the caller dead-letters the message)."""
    try:
        return Execution.model_validate(data)
    except ValidationError as exc:
        raise ValueError(f"execution_requested without valid ids: {_brief(exc)}") from exc


def parse_request(data: dict[str, Any], subject: str) -> ExecutionRequest:
    try:
        request = ExecutionRequest.model_validate(data)
    except ValidationError as exc:
        raise JobFailure(ErrorCode.INVALID_REQUEST, f"invalid request: {_brief(exc)}") from exc
    if request.job_id != subject:
        raise JobFailure(
            ErrorCode.INVALID_REQUEST,
            f"data.job_id {request.job_id} differs from the event subject {subject}",
        )
    return request


def is_past(deadline: datetime, now: datetime) -> bool:
    return now > deadline


def _brief(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in error['loc']) or 'data'}: {error['msg']}"
        for error in exc.errors()
    )
