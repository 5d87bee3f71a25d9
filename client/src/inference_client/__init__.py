"""The job API's client, shared by the simulator and the web UI."""

from inference_client.client import InferenceClient
from inference_client.problems import (
    ApiError,
    ApiFailure,
    ApiTransportError,
    ApiUnreachable,
    problem_name,
)
from inference_client.resources import (
    TERMINAL_STATUSES,
    Batch,
    ImageUpload,
    Job,
    JobError,
    Model,
    RejectedFile,
    UnexpectedResponse,
)
from inference_client.retrying import RetryNotice, RetryPolicy
from inference_client.sse import ServerSentEvent, parse_sse

__all__ = [
    "TERMINAL_STATUSES",
    "ApiError",
    "ApiFailure",
    "ApiTransportError",
    "ApiUnreachable",
    "Batch",
    "ImageUpload",
    "InferenceClient",
    "Job",
    "JobError",
    "Model",
    "RejectedFile",
    "RetryNotice",
    "RetryPolicy",
    "ServerSentEvent",
    "UnexpectedResponse",
    "parse_sse",
    "problem_name",
]
