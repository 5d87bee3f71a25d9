import json
from datetime import UTC, datetime

import pytest

from inference_service.api.problems import PROBLEM_JSON, describe, problem
from inference_service.domain.catalog import UnknownModel
from inference_service.domain.cursor import InvalidCursor
from inference_service.domain.images import ImageTooLarge, InvalidImage
from inference_service.domain.job import Job, JobError
from inference_service.domain.lifecycle import IllegalTransition, JobStatus
from inference_service.ports import StoreUnavailable
from inference_service.service_layer.jobs import (
    ExecuteNeedsImage,
    IdempotencyKeyReused,
    JobNotFound,
    NoResult,
)

JOB = "0123456789abcdef0123456789abcdef"


def test_problem_body_has_the_rfc_9457_members() -> None:
    response = problem(404, "gone", slug="job-not-found", instance="/x", job_status="NEW")
    body = json.loads(response.body)
    assert response.status_code == 404
    assert response.content_type == PROBLEM_JSON
    assert body == {
        "type": "urn:cvinference:problem:job-not-found",
        "title": "Not Found",
        "status": 404,
        "detail": "gone",
        "instance": "/x",
        "job_status": "NEW",
    }


def test_without_a_type_it_is_about_blank() -> None:
    assert json.loads(problem(400, "bad").body)["type"] == "about:blank"


def test_each_domain_error_has_its_status() -> None:
    cases = {
        JobNotFound(JOB): (404, "job-not-found"),
        UnknownModel("nope"): (422, "unknown-model"),
        IllegalTransition(JOB, JobStatus.DONE, "cancel"): (409, "illegal-transition"),
        ImageTooLarge("big", "image-too-large"): (413, "image-too-large"),
        ImageTooLarge("many", "too-many-pixels"): (422, "too-many-pixels"),
        InvalidImage("what", "unsupported-image-type"): (415, "unsupported-image-type"),
        InvalidImage("broken", "corrupt-image"): (422, "corrupt-image"),
        InvalidImage("nothing", "empty-image"): (422, "empty-image"),
        InvalidCursor("x"): (400, "invalid-cursor"),
        IdempotencyKeyReused("k"): (422, "idempotency-key-reused"),
        ExecuteNeedsImage(): (422, "execute-needs-image"),
    }
    for error, (status, slug) in cases.items():
        spec = describe(error)
        assert spec is not None, error
        assert (spec.status, spec.slug) == (status, slug), error


def test_illegal_transition_carries_the_job_status() -> None:
    spec = describe(IllegalTransition(JOB, JobStatus.RUNNING, "execute"))
    assert spec is not None and spec.extensions == {"job_status": "RUNNING"}


def test_a_result_not_ready_says_when_to_come_back() -> None:
    spec = describe(NoResult(job(JobStatus.RUNNING)))
    assert spec is not None
    assert (spec.status, spec.slug) == (409, "job-not-done")
    assert spec.headers == {"Retry-After": "1"}
    assert spec.extensions == {"job_status": "RUNNING"}


def test_a_failed_job_has_no_retry_after_but_its_error() -> None:
    spec = describe(NoResult(job(JobStatus.FAILED, JobError("model_error", "boom"))))
    assert spec is not None
    assert spec.slug == "job-failed" and spec.headers == {}
    assert spec.extensions["error"] == {"code": "model_error", "message": "boom"}


def test_unknown_errors_are_not_described() -> None:
    assert describe(RuntimeError("bug")) is None


def test_a_database_outage_is_a_503_worth_retrying() -> None:
    from pymongo.errors import AutoReconnect, ServerSelectionTimeoutError

    from inference_common.image_store import ImageStoreUnavailable
    from inference_service.adapters.documents import translated

    outages: list[Exception] = [ImageStoreUnavailable("no server")]
    for cause in (AutoReconnect("connection closed"), ServerSelectionTimeoutError("no server")):
        # The adapter says it in the port's terms: the API knows no pymongo.
        with pytest.raises(StoreUnavailable) as raised, translated():
            raise cause
        outages.append(raised.value)
    for error in outages:
        spec = describe(error)
        assert spec is not None
        assert (spec.status, spec.slug) == (503, "database-unavailable")
        assert spec.headers == {"Retry-After": "1"}


def job(status: JobStatus, error: JobError | None = None) -> Job:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    return Job(JOB, "a", "n", "m", "t", {}, status, at, at, "", "", error=error)
