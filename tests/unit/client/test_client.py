"""The job API client on a fake transport and a fake clock: answers, problems and retries."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from inference_client import (
    ApiError,
    ApiTransportError,
    ApiUnreachable,
    ImageUpload,
    InferenceClient,
    RetryNotice,
    RetryPolicy,
    UnexpectedResponse,
    problem_name,
)
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
RESULT = {"job_id": JOB_ID, "model": "cls", "result": {"task": "classification", "classes": []}}
CAT = ImageUpload("cat.jpg", b"\xff\xd8jpeg", "image/jpeg")
REFUSED = httpx.ConnectError("[Errno 111] Connection refused")
Answer = httpx.Response | Exception


class Recorder:
    """A MockTransport handler that answers from a list (or by the fake time) and keeps the
    requests; the client it makes sleeps on the fake clock, so an outage costs no real time."""

    def __init__(self, *answers: Answer | Callable[[float], Answer]) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []
        self.now = 0.0
        self.sleeps: list[float] = []
        self.notices: list[RetryNotice] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if callable(answer):
            answer = answer(self.now)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def client(self, **kwargs: object) -> InferenceClient:
        return InferenceClient(
            BASE,
            transport=httpx.MockTransport(self),
            on_retry=self.notices.append,
            sleep=self.sleep,
            clock=lambda: self.now,
            **kwargs,  # type: ignore[arg-type]
        )


def problem(code: int, **body: object) -> httpx.Response:
    """An RFC 9457 answer; the body's `status` repeats the code, as the RFC asks."""
    return httpx.Response(
        code, json={"status": code, **body}, headers={"content-type": "application/problem+json"}
    )


def down_until(seconds: float, then: httpx.Response) -> Callable[[float], Answer]:
    """A job service that is not there until `seconds` of fake time, then answers `then`."""
    return lambda now: REFUSED if now < seconds else then


async def reach(client: InferenceClient) -> None:
    """One answer first: a client that has reached the service rides out its outages."""
    await client.list_models()


# --- answers and problems ---


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
async def test_create_sends_the_raw_image_its_fields_in_the_query_and_the_key() -> None:
    recorder = Recorder(httpx.Response(201, json={**JOB, "status": "QUEUED"}))
    async with recorder.client() as client:
        job = await client.create_job(
            CAT, name="sim-1", model="cls", idempotency_key="key-1", options={"top_k": 3}
        )
    assert (job.id, job.status) == (JOB_ID, "QUEUED")
    request = recorder.requests[0]
    assert (request.method, request.url.path) == ("POST", "/api/v1/inference/jobs")
    assert request.headers["Idempotency-Key"] == "key-1"
    assert request.headers["content-type"] == "image/jpeg"
    assert request.content == b"\xff\xd8jpeg"
    assert dict(request.url.params) == {
        "name": "sim-1",
        "model": "cls",
        "execute": "true",
        "top_k": "3",
    }


@synchronously
async def test_an_image_type_the_api_does_not_list_goes_as_bytes() -> None:
    recorder = Recorder(httpx.Response(201, json={**JOB, "status": "QUEUED"}))
    odd = ImageUpload("cat.jpg", b"\xff\xd8jpeg", "image/pjpeg")
    async with recorder.client() as client:
        await client.create_job(odd, name="n", model="cls", idempotency_key="k")
    assert recorder.requests[0].headers["content-type"] == "application/octet-stream"


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
    assert recorder.notices == []


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
    recorder = Recorder(httpx.Response(404, text="<html>Not here</html>"))
    async with recorder.client() as client:
        with pytest.raises(ApiError) as caught:
            await client.get_job(JOB_ID)
    assert caught.value.kind == "HTTP 404 Not Found"
    assert caught.value.detail == "<html>Not here</html>"


def test_problem_names() -> None:
    assert problem_name("https://x.example/problems/job-not-found", "Not Found") == "job-not-found"
    assert problem_name("about:blank", "Conflict") == "Conflict"
    assert problem_name("urn:problem:quota", "Too Many") == "quota"


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
async def test_a_success_that_is_not_the_promised_resource_is_unexpected() -> None:
    recorder = Recorder(
        httpx.Response(200, json={"hello": "world"}),
        httpx.Response(200, text="hi"),
        httpx.Response(200, json={"job_id": JOB_ID}),
    )
    async with recorder.client() as client:
        with pytest.raises(UnexpectedResponse, match="not a job"):
            await client.get_job(JOB_ID)
        with pytest.raises(UnexpectedResponse, match="not JSON"):
            await client.get_job(JOB_ID)
        with pytest.raises(UnexpectedResponse, match="/result"):
            await client.get_result(JOB_ID)


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
async def test_an_event_stream_that_is_refused_is_a_problem_and_not_retried() -> None:
    recorder = Recorder(problem(401, title="Unauthorized", detail="missing X-API-Key"))
    async with recorder.client() as client:
        with pytest.raises(ApiError, match="401 Unauthorized: missing X-API-Key"):
            async for _ in client.events():
                pass
    assert len(recorder.requests) == 1


# --- riding out a restart ---


@synchronously
async def test_a_create_rides_out_a_minute_long_outage_with_the_same_key() -> None:
    created = httpx.Response(201, json={**JOB, "status": "QUEUED"})
    recorder = Recorder(httpx.Response(200, json={"items": MODELS}), down_until(65.0, created))
    async with recorder.client() as client:
        await reach(client)
        job = await client.create_job(CAT, name="n", model="cls", idempotency_key="key-1")
    assert job.status == "QUEUED"
    creates = recorder.requests[1:]
    assert len(creates) > 40  # backoff bounded by 1 s keeps trying briskly
    assert {r.headers["Idempotency-Key"] for r in creates} == {"key-1"}
    assert recorder.now >= 65.0
    assert client.retries == {"unreachable": len(creates) - 1}
    # The caller heard of each wait, with the outage's length so far, then of the recovery.
    *waiting, recovered = recorder.notices
    assert len(waiting) == len(creates) - 1
    assert waiting[0].describe() == "job service unreachable, retrying (0 s)"
    assert [n.outage_s for n in waiting] == sorted(n.outage_s for n in waiting)
    assert (
        waiting[-1].describe()
        == f"job service unreachable, retrying ({waiting[-1].outage_s:.0f} s)"
    )
    assert waiting[-1].outage_s > 60
    assert recovered.recovered and recovered.outage_s >= 65.0
    assert recovered.describe().startswith("job service answers again after 6")


@synchronously
async def test_a_result_read_rides_out_unavailability_and_a_broken_connection() -> None:
    unavailable = problem(503, type="urn:cvinference:problem:database-unavailable")
    recorder = Recorder(
        httpx.Response(200, json={"items": MODELS}),
        unavailable,
        httpx.ReadTimeout("timed out"),
        REFUSED,
        httpx.Response(200, json=RESULT),
    )
    async with recorder.client() as client:
        await reach(client)
        result = await client.get_result(JOB_ID)
    assert result == RESULT
    assert client.retries == {"HTTP 503": 1, "transport ReadTimeout": 1, "unreachable": 1}
    assert [n.describe().split(",")[0] for n in recorder.notices[:3]] == [
        "job service unavailable (HTTP 503)",
        "job service unreachable",
        "job service unreachable",
    ]


@synchronously
async def test_retry_after_is_honoured_on_429_and_503() -> None:
    limited = problem(429, type="urn:cvinference:problem:rate-limited")
    limited.headers["Retry-After"] = "3"
    unavailable = problem(503, type="urn:cvinference:problem:database-unavailable")
    unavailable.headers["Retry-After"] = "7"
    recorder = Recorder(limited, unavailable, httpx.Response(201, json=JOB))
    async with recorder.client() as client:
        await client.create_job(CAT, name="n", model="cls", idempotency_key="key-1")
    assert recorder.sleeps == [3.0, 7.0]
    assert recorder.notices[0].describe() == "rate limited (HTTP 429), retrying (0 s)"
    assert recorder.notices[1].describe() == "job service unavailable (HTTP 503), retrying (3 s)"


@synchronously
async def test_a_long_retry_after_is_capped() -> None:
    unavailable = problem(503)
    unavailable.headers["Retry-After"] = "3600"
    recorder = Recorder(unavailable, httpx.Response(200, json=JOB))
    async with recorder.client() as client:
        await client.get_job(JOB_ID)
    assert recorder.sleeps == [RetryPolicy().max_retry_after_s]


@synchronously
async def test_an_outage_longer_than_the_policy_ends_in_one_clear_error() -> None:
    recorder = Recorder(httpx.Response(200, json={"items": MODELS}), REFUSED)
    async with recorder.client(policy=RetryPolicy(ride_out_s=90.0)) as client:
        await reach(client)
        with pytest.raises(ApiUnreachable) as caught:
            await client.get_job(JOB_ID)
    assert str(caught.value) == f"cannot reach the inference API at {BASE}: {REFUSED}"
    assert caught.value.kind == "unreachable"
    assert 88.0 <= recorder.now <= 90.0  # it gave up rather than overrun its budget


@synchronously
async def test_before_any_answer_a_wrong_address_fails_fast() -> None:
    recorder = Recorder(REFUSED)
    async with recorder.client() as client:
        with pytest.raises(ApiUnreachable):
            await client.list_models()
    assert recorder.now <= RetryPolicy().first_contact_s
    assert len(recorder.requests) > 1


@synchronously
async def test_create_waits_out_a_key_still_held_by_an_earlier_attempt() -> None:
    in_progress = problem(409, type="urn:cvinference:problem:idempotency-key-in-progress")
    recorder = Recorder(in_progress, in_progress, httpx.Response(201, json=JOB))
    async with recorder.client() as client:
        job = await client.create_job(CAT, name="n", model="cls", idempotency_key="key-1")
    assert job.id == JOB_ID
    assert len(recorder.requests) == 3
    assert {r.headers["Idempotency-Key"] for r in recorder.requests} == {"key-1"}
    assert recorder.notices[0].trouble == "an earlier attempt still holds the idempotency key"


@synchronously
async def test_any_other_conflict_is_final() -> None:
    recorder = Recorder(problem(409, type="urn:cvinference:problem:illegal-transition"))
    async with recorder.client() as client:
        with pytest.raises(ApiError) as raised:
            await client.create_job(CAT, name="n", model="cls", idempotency_key="key-1")
    assert raised.value.status == 409
    assert len(recorder.requests) == 1


@synchronously
async def test_state_changes_are_not_resent_after_the_service_may_have_acted() -> None:
    recorder = Recorder(problem(503, title="Service Unavailable"))
    async with recorder.client() as client:
        for call in (client.execute_job, client.cancel_job, client.delete_job):
            with pytest.raises(ApiError):
                await call(JOB_ID)
    recorder.answers = [httpx.ReadTimeout("timed out")]
    async with recorder.client() as client:
        with pytest.raises(ApiTransportError) as caught:
            await client.cancel_job(JOB_ID)
    assert caught.value.kind == "transport ReadTimeout"
    assert [r.url.path.rsplit("/", 1)[-1] for r in recorder.requests] == [
        "execution",
        "cancellation",
        JOB_ID,
        "cancellation",
    ]


@synchronously
async def test_state_changes_are_resent_when_the_service_cannot_have_seen_them() -> None:
    # No connection, or a 429 (refused before doing anything): resending is safe.
    limited = problem(429, title="Too Many Requests")
    limited.headers["Retry-After"] = "1"
    recorder = Recorder(
        httpx.Response(200, json={"items": MODELS}),
        REFUSED,
        httpx.Response(202, json={**JOB, "status": "QUEUED"}),
        limited,
        httpx.Response(204),
    )
    async with recorder.client() as client:
        await reach(client)
        job = await client.execute_job(JOB_ID)
        await client.delete_job(JOB_ID)
    assert job is not None and job.status == "QUEUED"
    assert [r.method for r in recorder.requests] == ["GET", "POST", "POST", "DELETE", "DELETE"]
    assert client.retries == {"unreachable": 1, "HTTP 429": 1}


def test_backoff_grows_with_full_jitter_up_to_its_ceiling() -> None:
    policy = RetryPolicy(backoff_s=0.5, max_backoff_s=2.0)
    highest = lambda low, high: high  # noqa: E731 (the jitter's upper end)
    assert [policy.delay_s(n, draw=highest) for n in (1, 2, 3, 4, 40, 10_000)] == [
        0.5,
        1.0,
        2.0,
        2.0,
        2.0,
        2.0,
    ]
    assert policy.delay_s(3, draw=lambda low, high: low) == 0.0
    assert policy.delay_s(1, "2") == 2.0
    assert policy.delay_s(1, "-5") == 0.0
    assert 0 <= policy.delay_s(3, "Wed, 21 Oct 2015 07:28:00 GMT") <= 2.0


# --- batches ---

BATCH_ID = "fedcba9876543210fedcba9876543210"
COUNTS = {"NEW": 0, "QUEUED": 1, "RUNNING": 0, "DONE": 1, "FAILED": 0, "CANCELLED": 0,
          "REJECTED": 1, "DELETED": 0}  # fmt: skip
BATCH = {
    "id": BATCH_ID,
    "model": "cls",
    "total": 3,
    "counts": COUNTS,
    "progress": 0.6667,
    "finished": False,
    "rejected": [{"index": 2, "name": "x.png", "problem": {"status": 415, "detail": "no"}}],
}


@synchronously
async def test_a_batch_sends_every_file_as_a_part_and_reads_its_counts() -> None:
    recorder = Recorder(httpx.Response(201, json=BATCH))
    async with recorder.client() as client:
        batch = await client.create_batch(
            [CAT, ImageUpload("dog.png", b"png", "image/png")],
            model="cls",
            idempotency_key="upload-1",
            options={"top_k": 2},
        )
    assert (batch.id, batch.total, batch.done, batch.finished) == (BATCH_ID, 3, 2, False)
    assert [(r.index, r.name, r.problem["status"]) for r in batch.rejected] == [(2, "x.png", 415)]
    request = recorder.requests[0]
    assert (request.method, request.url.path) == ("POST", "/api/v1/inference/batches")
    assert request.headers["Idempotency-Key"] == "upload-1"
    assert request.content.count(b'name="files"; filename=') == 2
    assert b'name="options"\r\n\r\n{"top_k": 2}\r\n' in request.content


@synchronously
async def test_batch_results_are_json_lines_and_a_409_before_they_are_ready() -> None:
    lines = [{"index": 0, "name": "cat.jpg", "status": "DONE", "result": {"classes": []}}]
    recorder = Recorder(
        problem(409, type="urn:cvinference:problem:batch-not-finished", title="Conflict"),
        httpx.Response(200, text="".join(json.dumps(line) + "\n" for line in lines)),
    )
    async with recorder.client() as client:
        with pytest.raises(ApiError) as raised:
            await client.batch_results(BATCH_ID)
        assert raised.value.kind == "HTTP 409 batch-not-finished"
        assert await client.batch_results(BATCH_ID) == lines
    assert recorder.requests[0].url.path.endswith(f"/batches/{BATCH_ID}/results")
