"""Why an execution failed, in the terms of `job.failed.v1` (openapi/asyncapi.yaml)."""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    IMAGE_MISSING = "image_missing"
    IMAGE_UNREADABLE = "image_unreadable"
    IMAGE_CHECKSUM_MISMATCH = "image_checksum_mismatch"
    UNKNOWN_MODEL = "unknown_model"
    INVALID_REQUEST = "invalid_request"
    MODEL_ERROR = "model_error"
    DEADLINE_EXCEEDED = "deadline_exceeded"


class JobFailure(Exception):
    """Ends one execution with a `job.failed.v1`; the consumer carries on with the next."""

    def __init__(self, code: ErrorCode, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        # True only when the same request could succeed later (a store outage, a backlog);
        # a corrupt image or an unknown model will fail the same way every time.
        self.retryable = retryable


class ImageUnreadable(JobFailure):
    """The bytes are not an image Pillow can decode within our limits."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.IMAGE_UNREADABLE, message)
