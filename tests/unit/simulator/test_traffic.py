from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import pytest

from inference_client import ImageUpload, Model, ServerSentEvent
from simulator.traffic import (
    CompletionSignals,
    JobOutcome,
    JobPlan,
    Pacing,
    RunTimers,
    TrafficRun,
    plan_jobs,
    settled_job_id,
)
from tests.unit.simulator.fake_api import FakeApi, synchronously

CAT = ImageUpload("cat.jpg", b"\xff\xd8jpeg", "image/jpeg")
DOG = ImageUpload("dog.jpg", b"\xff\xd8jpeg2", "image/jpeg")
DIGIT = ImageUpload("digit.png", b"\x89PNG", "image/png")
# Polls so rare that a run which finishes fast must have learned from the event stream.
STREAM_ONLY = RunTimers(poll_with_stream_s=60, poll_without_stream_s=60, stream_wait_s=2)
POLL_ONLY = RunTimers(poll_with_stream_s=0.02, poll_without_stream_s=0.02, stream_wait_s=0.05)


def plans(models: Sequence[str], count: int) -> list[JobPlan]:
    return [JobPlan(i, models[i % len(models)], CAT) for i in range(count)]


async def run(
    api: FakeApi, job_plans: list[JobPlan], pacing: Pacing, **kwargs: object
) -> TrafficRun:
    async with api.client() as client:
        traffic = TrafficRun(client, job_plans, pacing, **kwargs)  # type: ignore[arg-type]
        await traffic.run()
        return traffic


def test_plan_mixes_models_and_their_images_round_robin() -> None:
    models = [Model("cls", "", "classification"), Model("mnist", "", "classification")]
    images = {"cls": [CAT, DOG], "mnist": [DIGIT]}
    planned = plan_jobs(5, models, images.__getitem__)
    assert [(p.index, p.model, p.image.name) for p in planned] == [
        (0, "cls", "cat.jpg"),
        (1, "mnist", "digit.png"),
        (2, "cls", "dog.jpg"),
        (3, "mnist", "digit.png"),
        (4, "cls", "cat.jpg"),
    ]


def test_pacing_is_one_of_concurrency_or_rate() -> None:
    assert Pacing(concurrency=3).mode == "concurrency"
    assert Pacing(rate=2.5).value == 2.5
    with pytest.raises(ValueError):
        Pacing()
    with pytest.raises(ValueError):
        Pacing(concurrency=1, rate=1.0)


@synchronously
async def test_closed_loop_runs_every_job_once_within_its_concurrency() -> None:
    api = FakeApi(run_s=0.03)
    traffic = await run(api, plans(["cls", "det"], 12), Pacing(concurrency=3), timers=STREAM_ONLY)
    outcomes = sorted(traffic.outcomes, key=lambda o: o.index)
    assert [o.status for o in outcomes] == ["DONE"] * 12
    assert api.count("POST", "/jobs") == 12 and len(api.jobs) == 12
    assert 1 <= api.peak_in_flight <= 3
    assert all(o.error is None and o.result == "Egyptian cat 0.82" for o in outcomes)
    assert all(o.latency_s is not None and o.latency_s >= 0.03 for o in outcomes)
    assert {o.job_id for o in outcomes} == set(api.jobs)
    assert api.count("GET", r"/jobs/\w+/result") == 12


@synchronously
async def test_completion_comes_from_the_event_stream() -> None:
    api = FakeApi(run_s=0.02)
    started = time.monotonic()
    traffic = await run(api, plans(["cls"], 6), Pacing(concurrency=6), timers=STREAM_ONLY)
    assert time.monotonic() - started < 5  # polling alone would take 60 s
    assert traffic.stream_opened
    assert [o.status for o in traffic.outcomes] == ["DONE"] * 6
    assert api.count("GET", r"/jobs/\w{32}") == 6  # one confirming read per job, no polling


@synchronously
async def test_polling_finds_jobs_when_the_event_stream_is_missing() -> None:
    api = FakeApi(run_s=0.02, events_enabled=False)
    traffic = await run(api, plans(["cls"], 4), Pacing(concurrency=2), timers=POLL_ONLY)
    assert [o.status for o in traffic.outcomes] == ["DONE"] * 4
    assert not traffic.stream_opened
    assert traffic.stream_errors["HTTP 404 not-found"] >= 1


@synchronously
async def test_polling_covers_events_that_never_arrive() -> None:
    api = FakeApi(run_s=0.02, send_events=False)
    timers = RunTimers(poll_with_stream_s=0.05, poll_without_stream_s=0.05)
    traffic = await run(api, plans(["cls"], 3), Pacing(concurrency=3), timers=timers)
    assert traffic.stream_opened
    assert [o.status for o in traffic.outcomes] == ["DONE"] * 3


@synchronously
async def test_open_loop_starts_jobs_on_schedule_without_waiting_for_results() -> None:
    api = FakeApi(run_s=0.5)
    traffic = await run(api, plans(["cls"], 5), Pacing(rate=50), timers=STREAM_ONLY)
    outcomes = sorted(traffic.outcomes, key=lambda o: o.index)
    starts = [o.submitted_at for o in outcomes]
    assert all(s is not None and s >= i / 50 - 0.005 for i, s in enumerate(starts))
    assert starts[-1] is not None and starts[-1] < 0.4  # not held back by 0.5 s jobs
    assert api.peak_in_flight == 5
    assert [o.status for o in outcomes] == ["DONE"] * 5


@synchronously
async def test_duration_stops_submitting_but_waits_for_jobs_in_flight() -> None:
    api = FakeApi(run_s=0.3)
    traffic = await run(
        api, plans(["cls"], 100), Pacing(rate=10), duration_s=0.25, timers=STREAM_ONLY
    )
    assert len(traffic.outcomes) == 3  # at 0.0, 0.1 and 0.2 s
    assert len(api.jobs) == 3
    assert [o.status for o in traffic.outcomes] == ["DONE"] * 3


@synchronously
async def test_failed_jobs_report_their_error_code() -> None:
    api = FakeApi(failing_models={"det"})
    traffic = await run(api, plans(["cls", "det"], 4), Pacing(concurrency=4), timers=STREAM_ONLY)
    by_model = {o.model: o for o in traffic.outcomes}
    assert by_model["det"].status == "FAILED"
    assert by_model["det"].error == "job image_unreadable"
    assert by_model["det"].detail == "cannot identify image file"
    assert by_model["det"].terminal
    assert by_model["cls"].status == "DONE"


@synchronously
async def test_a_rejected_create_is_counted_by_its_problem_type() -> None:
    api = FakeApi(rejected_models={"det"})
    traffic = await run(api, plans(["cls", "det"], 2), Pacing(concurrency=2), timers=STREAM_ONLY)
    rejected = next(o for o in traffic.outcomes if o.model == "det")
    assert (rejected.status, rejected.job_id) == ("NOT_CREATED", None)
    assert rejected.error == "HTTP 422 unknown-model"
    assert rejected.detail is not None and "no model det" in rejected.detail


@synchronously
async def test_a_retried_create_reuses_its_idempotency_key_and_creates_one_job() -> None:
    api = FakeApi(unavailable_creates=1)
    async with api.client() as client:
        traffic = TrafficRun(client, plans(["cls"], 1), Pacing(concurrency=1), timers=STREAM_ONLY)
        await traffic.run()
        assert client.retries == {"HTTP 503": 1}
    assert len(api.idempotency_keys) == 2 and len(set(api.idempotency_keys)) == 1
    assert len(api.jobs) == 1
    assert traffic.outcomes[0].status == "DONE"


@synchronously
async def test_a_job_that_never_finishes_times_out_with_its_last_status() -> None:
    api = FakeApi(stuck_models={"cls"})
    traffic = await run(
        api, plans(["cls"], 1), Pacing(concurrency=1), result_timeout_s=0.2, timers=POLL_ONLY
    )
    (outcome,) = traffic.outcomes
    assert (outcome.status, outcome.error, outcome.terminal) == ("QUEUED", "timeout", False)


@synchronously
async def test_interrupt_stops_at_once_and_keeps_the_partial_outcomes() -> None:
    api = FakeApi(stuck_models={"cls"})
    async with api.client() as client:
        traffic = TrafficRun(client, plans(["cls"], 50), Pacing(rate=100), timers=STREAM_ONLY)
        task = asyncio.create_task(traffic.run())
        await asyncio.sleep(0.1)
        traffic.interrupt()
        outcomes: list[JobOutcome] = await asyncio.wait_for(task, 2)
    assert traffic.interrupted
    assert 0 < len(outcomes) < 50
    assert all(o.error == "interrupted" and o.status == "QUEUED" for o in outcomes)


@synchronously
async def test_a_reconnected_stream_rereads_the_jobs_that_settled_while_it_was_down() -> None:
    api = FakeApi(run_s=0.2)
    started = time.monotonic()

    async def restart_soon() -> None:
        await asyncio.sleep(0.05)  # the job is created, its completion not yet streamed
        api.drop_streams()  # the client reconnects after 0.5 s: the completion is missed

    restart = asyncio.create_task(restart_soon())
    traffic = await run(api, plans(["cls"], 1), Pacing(concurrency=1), timers=STREAM_ONLY)
    await restart
    assert time.monotonic() - started < 5  # not left to the next poll, 60 s away
    assert [o.status for o in traffic.outcomes] == ["DONE"]


def test_only_settling_events_of_ours_wake_a_waiter() -> None:
    from cloudevents.core.formats.json import JSONFormat

    from inference_common.events import EventType, new_event
    from tests.unit.simulator import job_events as ev

    def sse(event_type: EventType, data: dict[str, object]) -> ServerSentEvent:
        body = JSONFormat().write(new_event(event_type, "/executor-service", ev.JOB_ID, data))
        return ServerSentEvent(event_type.value, body.decode())

    assert settled_job_id(sse(EventType.COMPLETED, ev.completed())) == ev.JOB_ID
    assert settled_job_id(sse(EventType.FAILED, ev.failed())) == ev.JOB_ID
    assert settled_job_id(sse(EventType.CANCELLED, ev.cancelled())) == ev.JOB_ID
    assert settled_job_id(sse(EventType.DELETED, ev.deleted())) == ev.JOB_ID
    assert settled_job_id(sse(EventType.STARTED, ev.started())) is None
    assert settled_job_id(ServerSentEvent("message", "not json")) is None


def test_a_settling_event_before_the_waiter_registers_wakes_it_at_once() -> None:
    signals = CompletionSignals()
    signals.notify("early")
    assert signals.register("early").is_set()
    assert not signals.register("other").is_set()
    for number in range(CompletionSignals.EARLY_KEPT + 1):
        signals.notify(f"job-{number}")
    assert not signals.register("job-0").is_set()  # the oldest was dropped: bounded
    assert signals.register(f"job-{CompletionSignals.EARLY_KEPT}").is_set()


@synchronously
async def test_a_job_whose_event_beats_the_create_answer_is_not_left_to_the_poll() -> None:
    api = FakeApi(finish_before_answer=True, fold_lag_s=0.1)
    started = time.monotonic()
    traffic = await run(api, plans(["cls"], 3), Pacing(concurrency=3), timers=STREAM_ONLY)
    assert time.monotonic() - started < 5  # the next poll would come after 60 s
    assert [o.status for o in traffic.outcomes] == ["DONE"] * 3
