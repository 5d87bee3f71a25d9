"""RFC 9457 problem details for every error, ours and Connexion's alike."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from connexion.exceptions import ProblemException
from connexion.lifecycle import ConnexionRequest, ConnexionResponse
from starlette.exceptions import HTTPException

from inference_common.image_store import ImageStoreUnavailable
from inference_common.tracecontext import trace_id
from inference_service.api.batch_uploads import BatchTooLarge, InvalidArchive
from inference_service.api.telemetry import request_span
from inference_service.domain.batch import FileProblem
from inference_service.domain.catalog import UnknownModel
from inference_service.domain.clock import iso
from inference_service.domain.cursor import InvalidCursor
from inference_service.domain.images import ImageTooLarge, InvalidImage
from inference_service.domain.lifecycle import IllegalTransition, JobStatus
from inference_service.ports import StoreUnavailable
from inference_service.service_layer.batches import BatchNotFinished, BatchNotFound
from inference_service.service_layer.jobs import (
    ExecuteNeedsImage,
    IdempotencyKeyReused,
    IdempotentRequestInProgress,
    JobNotFound,
    NoResult,
    Purged,
)
from inference_service.service_layer.waiting import ClassificationFailed, ClassificationTimedOut

log = logging.getLogger(__name__)

PROBLEM_JSON: Final = "application/problem+json"
TYPE_BASE: Final = "urn:cvinference:problem:"
# While a job may still finish, a client asking for its result should come back after this.
RETRY_AFTER_SECONDS: Final = 1

_TITLES: Final = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    409: "Conflict",
    410: "Gone",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def problem(
    status: int, detail: str, *, headers: dict[str, str] | None = None, **fields: Any
) -> ConnexionResponse:
    """A problem+json answer; `fields` are problem_body's (one place lists them)."""
    body = problem_body(status, detail, **fields)
    return ConnexionResponse(
        status_code=status,
        mimetype=PROBLEM_JSON,
        content_type=PROBLEM_JSON,
        body=json.dumps(body),
        headers=headers or {},
    )


def problem_body(
    status: int,
    detail: str,
    *,
    slug: str | None = None,
    type_uri: str | None = None,
    title: str | None = None,
    instance: str | None = None,
    **extensions: Any,
) -> dict[str, Any]:
    """The problem+json object: an answer's body, or a batch file's problem."""
    body: dict[str, Any] = {
        "type": type_uri or (TYPE_BASE + slug if slug else "about:blank"),
        "title": title or _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    body.update({key: value for key, value in extensions.items() if value is not None})
    return body


class Problem(ProblemException):  # type: ignore[misc]
    """Raised by handlers and middleware for a problem of ours."""

    def __init__(
        self,
        status: int,
        detail: str,
        slug: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(
            status=status,
            title=_TITLES.get(status),
            detail=detail,
            type=TYPE_BASE + slug if slug else None,
            headers=headers,
            ext=extensions or None,
        )
        self.slug = slug


def _instance(request: ConnexionRequest) -> str:
    return str(request.url.path)


def from_connexion(request: ConnexionRequest, exc: ProblemException) -> ConnexionResponse:
    """Connexion's own problems (validation, security, routing) plus `instance`."""
    extensions = dict(exc.ext or {})
    # jsonschema's messages run on with the whole schema; the first line says it.
    detail = str(exc.detail or exc.title or "").split("\n", 1)[0]
    if exc.status == 400 and "errors" not in extensions and detail:
        extensions["errors"] = [{"detail": detail}]
    return problem(
        exc.status,
        detail,
        type_uri=exc.type,
        title=exc.title,
        instance=_instance(request),
        headers=dict(exc.headers or {}),
        **extensions,
    )


class AllowedMethods:
    """The methods the spec defines for a path: what a 405's `Allow` must list.

    Connexion routes each operation separately, so Starlette's own 405 names only the
    methods of the first route whose path matched.
    """

    def __init__(self, base_path: str, paths: dict[str, Any]) -> None:
        self._routes = [
            (
                re.compile(
                    "^" + re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(base_path + path)) + "$"
                ),
                sorted(method.upper() for method in operations if method in _HTTP_METHODS),
            )
            for path, operations in paths.items()
        ]

    def __call__(self, path: str) -> list[str] | None:
        for pattern, methods in self._routes:
            if pattern.match(path):
                return methods
        return None

    def handler(self, request: ConnexionRequest, exc: HTTPException) -> ConnexionResponse:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            methods = self(str(request.url.path))
            if methods:
                headers["Allow"] = ", ".join(methods)
        return problem(
            exc.status_code, str(exc.detail), instance=_instance(request), headers=headers
        )


_HTTP_METHODS: Final = frozenset({"get", "put", "post", "delete", "patch", "head", "options"})


@dataclass(frozen=True)
class ProblemSpec:
    """How one of the service's errors reads over HTTP."""

    status: int
    slug: str
    detail: str
    headers: dict[str, str] = field(default_factory=dict)
    extensions: dict[str, Any] = field(default_factory=dict)


ErrorsOf = Callable[[Exception], dict[str, Any]]


def _field_error(pointer: str | None = None, parameter: str | None = None) -> ErrorsOf:
    """An `errors` member naming the body field or the parameter at fault."""

    def errors(exc: Exception) -> dict[str, Any]:
        where = {"pointer": pointer} if pointer else {"parameter": parameter}
        return {"errors": [{"detail": str(exc), **where}]}

    return errors


def _image_too_large(exc: ImageTooLarge) -> ProblemSpec:
    return ProblemSpec(413 if exc.code == "image-too-large" else 422, exc.code, str(exc))


def _invalid_image(exc: InvalidImage) -> ProblemSpec:
    return ProblemSpec(415 if exc.code == "unsupported-image-type" else 422, exc.code, str(exc))


def _illegal(exc: IllegalTransition) -> ProblemSpec:
    return ProblemSpec(
        409, "illegal-transition", str(exc), extensions={"job_status": exc.current.value}
    )


def _no_result(exc: NoResult) -> ProblemSpec:
    extensions: dict[str, Any] = {"job_status": exc.status.value}
    if exc.status is JobStatus.FAILED and exc.error:
        extensions["error"] = {"code": exc.error.code, "message": exc.error.message}
    return ProblemSpec(
        409,
        "job-failed" if exc.status is JobStatus.FAILED else "job-not-done",
        str(exc),
        # While the job may still finish, tell the client when to ask again.
        headers={} if exc.status.terminal else {"Retry-After": str(RETRY_AFTER_SECONDS)},
        extensions=extensions,
    )


def _purged(exc: Purged) -> ProblemSpec:
    extensions = {"job_status": exc.status.value, "removed_at": iso(exc.removed_at)}
    return ProblemSpec(410, "purged", str(exc), extensions=extensions)


def _batch_not_finished(exc: BatchNotFinished) -> ProblemSpec:
    return ProblemSpec(
        409,
        "batch-not-finished",
        str(exc),
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        extensions={"counts": exc.progress.counts},
    )


def _classify_failed(exc: ClassificationFailed) -> ProblemSpec:
    extensions: dict[str, Any] = {"job_id": exc.job_id, "job_status": exc.status.value}
    if exc.status is JobStatus.FAILED:
        if exc.error:
            extensions["error"] = {"code": exc.error.code, "message": exc.error.message}
        # The executor behind this request failed: a gateway's error, not the client's.
        return ProblemSpec(502, "job-failed", str(exc), extensions=extensions)
    return ProblemSpec(409, "job-cancelled", str(exc), extensions=extensions)


def _classify_timed_out(exc: ClassificationTimedOut) -> ProblemSpec:
    return ProblemSpec(504, "classify-timeout", str(exc), extensions={"job_id": exc.job_id})


def _database_unavailable(_exc: Exception) -> ProblemSpec:
    # A passing outage (a restart): worth a retry, which idempotency keys make safe.
    detail = "the database is not answering; retry shortly"
    return ProblemSpec(503, "database-unavailable", detail, headers={"Retry-After": "1"})


def _simple(
    status: int, slug: str, extra: Callable[[Exception], dict[str, Any]] | None = None
) -> Callable[[Any], ProblemSpec]:
    def build(exc: Exception) -> ProblemSpec:
        return ProblemSpec(status, slug, str(exc), extensions=extra(exc) if extra else {})

    return build


_BUILDERS: Final[list[tuple[type[Exception], Callable[[Any], ProblemSpec]]]] = [
    (JobNotFound, _simple(404, "job-not-found")),
    (BatchNotFound, _simple(404, "batch-not-found")),
    (BatchNotFinished, _batch_not_finished),
    (BatchTooLarge, _simple(413, "batch-too-large")),
    (InvalidArchive, _simple(422, "invalid-archive")),
    (UnknownModel, _simple(422, "unknown-model", _field_error(pointer="/model"))),
    (IllegalTransition, _illegal),
    (ImageTooLarge, _image_too_large),
    (InvalidImage, _invalid_image),
    (InvalidCursor, _simple(400, "invalid-cursor", _field_error(parameter="cursor"))),
    (IdempotencyKeyReused, _simple(422, "idempotency-key-reused")),
    (IdempotentRequestInProgress, _simple(409, "idempotency-key-in-progress")),
    (ExecuteNeedsImage, _simple(422, "execute-needs-image", _field_error(pointer="/execute"))),
    (NoResult, _no_result),
    (Purged, _purged),
    (ClassificationFailed, _classify_failed),
    (ClassificationTimedOut, _classify_timed_out),
    (StoreUnavailable, _database_unavailable),
    (ImageStoreUnavailable, _database_unavailable),
]
DOMAIN_ERRORS: Final = tuple(kind for kind, _ in _BUILDERS)


def describe(exc: Exception) -> ProblemSpec | None:
    for kind, build in _BUILDERS:
        if isinstance(exc, kind):
            return build(exc)
    return None


def file_problem(exc: Exception) -> FileProblem:
    """How one file's error reads in a batch (a problem+json of its own)."""
    spec = describe(exc)
    assert spec is not None, f"{type(exc).__name__} is not one of the service's errors"
    return FileProblem(spec.status, spec.slug, spec.detail)


def from_domain(request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
    """Map what the service raises to a status and a problem type."""
    spec = describe(exc)
    if spec is None:
        return unexpected(request, exc)
    return problem(
        spec.status,
        spec.detail,
        slug=spec.slug,
        instance=_instance(request),
        headers=spec.headers,
        **spec.extensions,
    )


def unexpected(request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
    log.error(
        "unhandled error on %s %s",
        request.method,
        request.url.path,
        exc_info=exc,
        extra={"trace_id": trace_id(request_span().traceparent())},
    )
    return problem(500, "an unexpected error; it was logged", instance=_instance(request))
