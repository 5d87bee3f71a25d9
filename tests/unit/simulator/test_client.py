from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from simulator.client import (
    ApiError,
    ApiTransportError,
    ApiUnreachable,
    InferenceClient,
    problem_name,
)
from simulator.resources import ImageSample, UnexpectedResponse
from tests.unit.simulator.fake_api import BASE, MODELS, synchronously

JOB_ID = "0123456789abcdef0123456789abcdef"
JOB = {
    "id": JOB_ID,
    "name": "n",
    "model": "cls",
    "task": "classification",
    "status": "NEW",
    "attempt": 0,
    "error": None,
}
CAT = ImageSample("cat.jpg", b"\xff\xd8jpeg", "image/jpeg")
Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """A MockTransport handler that answers from a list and keeps the requests."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def client(self, **kwargs: object) -> InferenceClient:
        return InferenceClient(
            BASE,
            transport=httpx.MockTransport(self),
            backoff_s=0.001,
            **kwargs,  # type: ignore[arg-type]
        )


def problem(code: int, **body: object) -> httpx.Response:
    """An RFC 9457 answer; the body's `status` repeats the code, as the RFC asks."""
    return httpx.Response(
        code, json={"status": code, **body}, headers={"content-type": "application/problem+json"}
    )


@synchronously
async def test_models_are_read_under_the_base_path_with_the_api_key() -> None:
    recorder = Recorder(httpx.Response(200, json={"items": MODELS}))
    async with recorder.client(api_key="secret") as client:
        models = await client.list_models()
    assert [(m.name, m.task, m.label_count) for m in models] == [
        ("cls", "classification", 1001),
        ("det", "object_detection", 90),
    ]
    request = recorder.requests[0]
    assert str(request.url) == f"{BASE}/models"
    assert request.headers["X-API-Key"] == "secret"


@synchronously
async def test_create_sends_the_image_form_and_idempotency_key() -> None:
    recorder = Recorder(httpx.Response(201, json={**JOB, "status": "QUEUED"}))
    async with recorder.client() as client:
        job = await client.create_job(
            CAT, name="sim-1", model="cls", idempotency_key="key-1", options={"top_k": 3}
        )
    assert (job.id, job.status) == (JOB_ID, "QUEUED")
    request = recorder.requests[0]
    assert (request.method, request.url.path) == ("POST", "/api/v1/inference/jobs")
    assert request.headers["Idempotency-Key"] == "key-1"
    assert request.headers["content-type"].startswith("multipart/form-data; boundary=")
    body = request.content
    assert (
        b'name="image"; filename="cat.jpg"\r\nContent-Type: image/jpeg\r\n\r\n\xff\xd8jpeg' in body
    )
    for name, value in (("name", b"sim-1"), ("model", b"cls"), ("execute", b"true")):
        assert b'name="' + name.encode() + b'"\r\n\r\n' + value + b"\r\n" in body
    assert b'name="options"\r\n\r\n{"top_k": 3}\r\n' in body


@synchronously
async def test_a_problem_surfaces_with_its_status_type_title_and_detail() -> None:
    recorder = Recorder(
        problem(
            409,
            type="https://cvinference.example/problems/job-not-done",
            title="Job not done",
            detail="the job is RUNNING",
            job_status="RUNNING",
        )
    )
    async with recorder.client() as client:
        with pytest.raises(ApiError) as caught:
            await client.get_result(JOB_ID)
    error = caught.value
    assert (error.status, error.title, error.detail) == (409, "Job not done", "the job is RUNNING")
    assert error.kind == "HTTP 409 job-not-done"
    assert error.problem["job_status"] == "RUNNING"
    assert str(error) == f"GET /jobs/{JOB_ID}/result: 409 Job not done: the job is RUNNING"
    assert len(recorder.requests) == 1  # a 409 is an answer, not something to retry


@synchronously
async def test_validation_problems_name_the_first_error_when_there_is_no_detail() -> None:
    recorder = Recorder(
        problem(
            400,
            type="about:blank",
            title="Bad Request",
            errors=[{"detail": "must be one of the models", "pointer": "/model"}],
        )
    )
    async with recorder.client() as client:
        with pytest.raises(ApiError) as caught:
            await client.create_job(CAT, name="n", model="nope", idempotency_key="k")
    assert caught.value.detail == "/model: must be one of the models"
    assert caught.value.kind == "HTTP 400 Bad Request"


@synchronously
async def test_an_error_that_is_not_a_problem_still_reads_clearly() -> None:
    recorder = Recorder(httpx.Response(502, text="<html>Bad gateway</html>"))
    async with recorder.client(max_attempts=2) as client:
        with pytest.raises(ApiError) as caught:
            await client.get_job(JOB_ID)
    assert caught.value.kind == "HTTP 502 Bad Gateway"
    assert caught.value.detail == "<html>Bad gateway</html>"
    assert len(recorder.requests) == 2
    assert client.retries == {"HTTP 502": 1}


def test_problem_names() -> None:
    assert problem_name("https://x.example/problems/job-not-found", "Not Found") == "job-not-found"
    assert problem_name("about:blank", "Conflict") == "Conflict"
    assert problem_name("urn:problem:quota", "Too Many") == "quota"


@synchronously
async def test_reads_are_retried_through_unavailability() -> None:
    recorder = Recorder(problem(503, title="Service Unavailable"), httpx.Response(200, json=JOB))
    async with recorder.client() as client:
        job = await client.get_job(JOB_ID)
    assert job.status == "NEW"
    assert len(recorder.requests) == 2
    assert client.retries == {"HTTP 503": 1}


@synchronously
async def test_state_changes_without_an_idempotency_key_are_never_retried() -> None:
    recorder = Recorder(problem(503, title="Service Unavailable"))
    async with recorder.client() as client:
        for call in (client.execute_job, client.cancel_job, client.delete_job):
            with pytest.raises(ApiError):
                await call(JOB_ID)
    assert [r.url.path.rsplit("/", 1)[-1] for r in recorder.requests] == [
        "execution",
        "cancellation",
        JOB_ID,
    ]


def rate_limited() -> httpx.Response:
    answer = problem(429, title="Too Many Requests", type="urn:cvinference:problem:rate-limited")
    answer.headers["Retry-After"] = "0"  # the service says at least 1; 0 keeps the test fast
    return answer


@synchronously
async def test_a_429_is_retried_for_every_request_after_its_retry_after() -> None:
    # The service refused the request before doing anything: a state change is safe to resend.
    recorder = Recorder(
        rate_limited(),
        httpx.Response(202, json={**JOB, "status": "QUEUED"}),
        rate_limited(),
        httpx.Response(204),
    )
    async with recorder.client() as client:
        job = await client.execute_job(JOB_ID)
        await client.delete_job(JOB_ID)
    assert job is not None and job.status == "QUEUED"
    assert [r.method for r in recorder.requests] == ["POST", "POST", "DELETE", "DELETE"]
    assert client.retries == {"HTTP 429": 2}


@synchronously
async def test_429_retries_are_bounded() -> None:
    recorder = Recorder(rate_limited())
    async with recorder.client(max_attempts=3) as client:
        with pytest.raises(ApiError) as caught:
            await client.cancel_job(JOB_ID)
    assert caught.value.status == 429 and caught.value.kind == "HTTP 429 rate-limited"
    assert len(recorder.requests) == 3


@synchronously
async def test_cancel_sends_its_reason_and_returns_the_job() -> None:
    recorder = Recorder(httpx.Response(200, json={**JOB, "status": "CANCELLED"}))
    async with recorder.client() as client:
        job = await client.cancel_job(JOB_ID, reason="demo")
    assert job is not None and job.status == "CANCELLED"
    assert json.loads(recorder.requests[0].content) == {"reason": "demo"}


@synchronously
async def test_delete_answers_nothing() -> None:
    recorder = Recorder(httpx.Response(204))
    async with recorder.client() as client:
        await client.delete_job(JOB_ID)
    assert recorder.requests[0].method == "DELETE"


@synchronously
async def test_an_unreachable_api_is_one_clear_message_after_the_retries() -> None:
    recorder = Recorder(httpx.ConnectError("[Errno 111] Connection refused"))
    async with recorder.client() as client:
        with pytest.raises(ApiUnreachable) as caught:
            await client.list_models()
    assert (
        str(caught.value)
        == f"cannot reach the inference API at {BASE}: [Errno 111] Connection refused"
    )
    assert caught.value.kind == "unreachable"
    assert len(recorder.requests) == 3
    assert client.retries == {"unreachable": 2}


@synchronously
async def test_a_broken_connection_is_a_transport_error() -> None:
    recorder = Recorder(httpx.ReadTimeout("timed out"))
    async with recorder.client(max_attempts=1) as client:
        with pytest.raises(ApiTransportError) as caught:
            await client.get_job(JOB_ID)
    assert caught.value.kind == "transport ReadTimeout"


@synchronously
async def test_a_success_that_is_not_the_promised_resource_is_unexpected() -> None:
    recorder = Recorder(
        httpx.Response(200, json={"hello": "world"}), httpx.Response(200, text="hi")
    )
    async with recorder.client() as client:
        with pytest.raises(UnexpectedResponse, match="not a job"):
            await client.get_job(JOB_ID)
        with pytest.raises(UnexpectedResponse, match="not JSON"):
            await client.get_job(JOB_ID)


def test_retry_after_is_honoured_up_to_a_cap() -> None:
    client = InferenceClient(BASE, backoff_s=0.1)
    assert client._backoff(1, "2") == 2.0
    assert client._backoff(1, "600") == 5.0
    assert 0 <= client._backoff(3, "Wed, 21 Oct 2015 07:28:00 GMT") <= 0.4
    assert 0 <= client._backoff(2) <= 0.2


def test_backoff_grows_up_to_its_ceiling() -> None:
    client = InferenceClient(BASE, backoff_s=0.5, max_backoff_s=2.0)
    waits = [client._backoff(attempt) for attempt in range(1, 40) for _ in range(20)]
    assert max(waits) <= 2.0
    assert max(waits) > 1.0  # the ceiling, not the first attempt's 0.5, bounds later ones


@synchronously
async def test_event_stream_yields_parsed_events_and_reports_its_opening() -> None:
    stream = b': live\n\nevent: io.cvinference.job.completed.v1\nid: 1\ndata: {"a":\ndata: 1}\n\n'
    recorder = Recorder(
        httpx.Response(200, content=stream, headers={"content-type": "text/event-stream"})
    )
    opened: list[bool] = []
    async with recorder.client() as client:
        events = [e async for e in client.events(on_open=lambda: opened.append(True))]
    assert opened == [True]
    assert [(e.event, e.data, e.id) for e in events] == [
        ("io.cvinference.job.completed.v1", '{"a":\n1}', "1"),
    ]
    assert recorder.requests[0].headers["Accept"] == "text/event-stream"


@synchronously
async def test_an_event_stream_that_is_refused_is_a_problem() -> None:
    recorder = Recorder(problem(401, title="Unauthorized", detail="missing X-API-Key"))
    async with recorder.client() as client:
        with pytest.raises(ApiError, match="401 Unauthorized: missing X-API-Key"):
            async for _ in client.events():
                pass


@synchronously
async def test_a_job_read_may_ask_the_server_to_wait_for_the_result() -> None:
    recorder = Recorder(httpx.Response(200, json={**JOB, "status": "DONE"}))
    async with recorder.client() as client:
        await client.get_job(JOB_ID)
        await client.get_job(JOB_ID, wait_s=2.5)
    plain, waiting = recorder.requests
    assert "wait" not in plain.url.params
    assert waiting.url.params["wait"] == "2.5"


@synchronously
async def test_create_waits_out_a_key_still_held_by_an_earlier_attempt() -> None:
    in_progress = problem(409, type="urn:cvinference:problem:idempotency-key-in-progress")
    unavailable = problem(503, type="urn:cvinference:problem:database-unavailable")
    recorder = Recorder(in_progress, unavailable, httpx.Response(201, json=JOB))
    async with recorder.client(max_attempts=5) as client:
        job = await client.create_job(CAT, name="n", model="cls", idempotency_key="key-1")
    assert job.id == JOB_ID
    assert len(recorder.requests) == 3
    assert {r.headers["Idempotency-Key"] for r in recorder.requests} == {"key-1"}


@synchronously
async def test_any_other_conflict_is_final() -> None:
    recorder = Recorder(problem(409, type="urn:cvinference:problem:illegal-transition"))
    async with recorder.client(max_attempts=5) as client:
        with pytest.raises(ApiError) as raised:
            await client.create_job(CAT, name="n", model="cls", idempotency_key="key-1")
    assert raised.value.status == 409
    assert len(recorder.requests) == 1
