"""The load loop: submit jobs at a fixed concurrency (closed loop) or rate (open loop), then
wait for each one's result.

Completion is learned from the API's event stream (`GET /events`) as it happens; every
waiting job also polls `GET /jobs/{id}` now and then, so a missed event or a dropped stream
only costs time, never a job. The run never creates more than the jobs it was given.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from inference_client import (
    ApiError,
    ApiFailure,
    ImageUpload,
    InferenceClient,
    Job,
    Model,
    ServerSentEvent,
    UnexpectedResponse,
)
from inference_common.events import EventType, InvalidEvent, from_record
from simulator.event_lines import describe_result

NOT_CREATED: Final = "NOT_CREATED"
# Events after which a job may be finished; the job itself (GET) has the last word.
SETTLING_EVENTS: Final = frozenset(
    {EventType.COMPLETED, EventType.FAILED, EventType.CANCELLED, EventType.DELETED}
)
STRUCTURED: Final[list[tuple[str, bytes | None]]] = [
    ("content-type", b"application/cloudevents+json")
]


@dataclass(frozen=True)
class JobPlan:
    index: int
    model: str
    image: ImageUpload


def plan_jobs(
    count: int, models: Sequence[Model], images_for: Callable[[str], Sequence[ImageUpload]]
) -> list[JobPlan]:
    """Round-robin over models, and over each model's images: a repeatable mix."""
    plans = []
    for index in range(count):
        model = models[index % len(models)].name
        images = images_for(model)
        plans.append(JobPlan(index, model, images[(index // len(models)) % len(images)]))
    return plans


@dataclass
class JobOutcome:
    """What happened to one planned job; times are seconds since the run started."""

    index: int
    model: str
    image: str
    job_id: str | None = None
    status: str = NOT_CREATED
    submitted_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    detail: str | None = None
    result: str | None = None

    @property
    def terminal(self) -> bool:
        return self.finished_at is not None

    @property
    def latency_s(self) -> float | None:
        if self.submitted_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.submitted_at


@dataclass(frozen=True)
class Pacing:
    """Exactly one of: `concurrency` jobs in flight, or `rate` new jobs per second."""

    concurrency: int | None = None
    rate: float | None = None

    def __post_init__(self) -> None:
        if (self.concurrency is None) == (self.rate is None):
            raise ValueError("give exactly one of concurrency and rate")

    @property
    def mode(self) -> str:
        return "concurrency" if self.concurrency is not None else "rate"

    @property
    def value(self) -> float:
        return float(self.concurrency if self.concurrency is not None else self.rate or 0)


class Observer(Protocol):
    def submitted(self, outcome: JobOutcome) -> None: ...

    def finished(self, outcome: JobOutcome) -> None: ...


class NullObserver:
    def submitted(self, outcome: JobOutcome) -> None:
        pass

    def finished(self, outcome: JobOutcome) -> None:
        pass


class CompletionSignals:
    """Wakes the waiter of a job when the event stream says it may be finished."""

    # The stream can deliver a job's settling event before the request that created the job
    # has been answered: such events are kept (the newest this many), so that the waiter who
    # registers a moment later wakes at once instead of a poll interval later.
    EARLY_KEPT = 1024

    def __init__(self) -> None:
        self._waiting: dict[str, asyncio.Event] = {}
        self._early: dict[str, None] = {}  # insertion-ordered: the oldest goes first
        self.open = asyncio.Event()

    def register(self, job_id: str) -> asyncio.Event:
        signal = self._waiting.setdefault(job_id, asyncio.Event())
        if job_id in self._early:
            del self._early[job_id]
            signal.set()
        return signal

    def forget(self, job_id: str) -> None:
        self._waiting.pop(job_id, None)

    def wake_all(self) -> None:
        """Every waiter reads its job once: the stream was down and may have missed events."""
        for signal in self._waiting.values():
            signal.set()

    def notify(self, job_id: str) -> None:
        signal = self._waiting.get(job_id)
        if signal is not None:
            signal.set()
            return
        # Another run's job (ignored), or ours before its create was answered.
        self._early[job_id] = None
        if len(self._early) > self.EARLY_KEPT:
            del self._early[next(iter(self._early))]


def settled_job_id(event: ServerSentEvent) -> str | None:
    """The job an SSE event may have finished, or None (data is a structured CloudEvent)."""
    try:
        envelope = from_record(event.data.encode(), STRUCTURED)
    except InvalidEvent:
        return None
    return envelope.subject if envelope.type in SETTLING_EVENTS else None


@dataclass
class RunTimers:
    """Poll intervals: rare while the event stream is up, brisk while it is down."""

    poll_with_stream_s: float = 5.0
    poll_without_stream_s: float = 1.0
    stream_wait_s: float = 2.0
    settle_wait_s: float = 5.0
    reconnect_max_s: float = 10.0


@dataclass
class TrafficRun:
    client: InferenceClient
    plans: Sequence[JobPlan]
    pacing: Pacing
    duration_s: float | None = None
    result_timeout_s: float = 120.0
    observer: Observer = field(default_factory=NullObserver)
    timers: RunTimers = field(default_factory=RunTimers)
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        self.outcomes: list[JobOutcome] = []
        self.request_errors: Counter[str] = Counter()
        self.stream_errors: Counter[str] = Counter()
        self.stream_opened = False
        self.interrupted = False
        self.elapsed_s = 0.0
        self._stop = asyncio.Event()
        self._stream_up = False
        self._signals = CompletionSignals()
        self._start = 0.0
        self._tasks: set[asyncio.Task[None]] = set()

    def interrupt(self) -> None:
        """Ctrl-C: stop submitting and waiting; the outcomes so far make the report."""
        self.interrupted = True
        self._stop.set()

    def now(self) -> float:
        return self.clock() - self._start

    async def run(self) -> list[JobOutcome]:
        self._start = self.clock()
        stream = asyncio.create_task(self._follow_events())
        # Listen before the first submit, so the first completions are not missed.
        await wait_at_most(self._signals.open, self.timers.stream_wait_s)
        pace = asyncio.create_task(self._pace())
        stopped = asyncio.create_task(self._stop.wait())
        await asyncio.wait({pace, stopped}, return_when=asyncio.FIRST_COMPLETED)
        # Every task is cancelled by name, not only through its parent, so no job keeps
        # waiting after Ctrl-C however the cancellation travels.
        everything = [pace, stopped, stream, *self._tasks]
        for task in everything:
            task.cancel()
        await asyncio.gather(*everything, return_exceptions=True)
        self.elapsed_s = self.now()
        if self.interrupted:
            for outcome in self.outcomes:
                if not outcome.terminal and outcome.error is None:
                    outcome.error = "interrupted"
        return self.outcomes

    async def _pace(self) -> None:
        if self.pacing.concurrency is not None:
            await self._closed_loop(self.pacing.concurrency)
        else:
            await self._open_loop(self.pacing.rate or 1.0)

    async def _closed_loop(self, concurrency: int) -> None:
        plans = iter(self.plans)  # shared: each worker takes the next plan, each plan once

        async def worker() -> None:
            for plan in plans:
                if self._submission_closed():
                    return
                await self._run_one(plan)

        await asyncio.gather(*(self._spawn(worker()) for _ in range(concurrency)))

    async def _open_loop(self, rate: float) -> None:
        # Jobs start on schedule whether or not earlier ones have finished (open loop), and
        # latency counts from the scheduled start, so a slow server cannot hide its queueing.
        tasks = []
        for plan in self.plans:
            delay = plan.index / rate - self.now()
            if delay > 0:
                await wait_at_most(self._stop, delay)
            if self._submission_closed():
                break
            tasks.append(self._spawn(self._run_one(plan, scheduled_at=plan.index / rate)))
        await asyncio.gather(*tasks)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _submission_closed(self) -> bool:
        expired = self.duration_s is not None and self.now() >= self.duration_s
        return self._stop.is_set() or expired

    async def _run_one(self, plan: JobPlan, scheduled_at: float | None = None) -> None:
        outcome = JobOutcome(plan.index, plan.model, plan.image.name)
        self.outcomes.append(outcome)
        now = self.now()
        outcome.submitted_at = now if scheduled_at is None else min(scheduled_at, now)
        self.observer.submitted(outcome)
        try:
            job = await self.client.create_job(
                plan.image,
                name=f"sim-{self.run_id}-{plan.index:05d}",
                model=plan.model,
                idempotency_key=str(uuid.uuid4()),
                execute=True,
            )
        except (ApiFailure, UnexpectedResponse) as exc:
            self._fail(outcome, exc)
            self.observer.finished(outcome)
            return
        outcome.job_id, outcome.status = job.id, job.status
        try:
            job = await self._await_terminal(outcome, job)
            await self._settle(outcome, job)
        except TimeoutError:
            outcome.error = "timeout"
            outcome.detail = f"no final status after {self.result_timeout_s:g} s"
        except (ApiFailure, UnexpectedResponse) as exc:
            self._fail(outcome, exc)
        finally:
            self._signals.forget(job.id)
        self.observer.finished(outcome)

    async def _await_terminal(self, outcome: JobOutcome, job: Job) -> Job:
        signal = self._signals.register(job.id)
        deadline = (outcome.submitted_at or 0.0) + self.result_timeout_s
        while not job.terminal:
            remaining = deadline - self.now()
            if remaining <= 0:
                raise TimeoutError
            await wait_at_most(signal, min(remaining, self._poll_interval()))
            # The event stream can be ahead of the job's record (the service folds results
            # in separately): after a settling event, the read waits on the server for it.
            wait_s = min(remaining, self.timers.settle_wait_s) if signal.is_set() else 0.0
            signal.clear()
            try:
                job = await self.client.get_job(job.id, wait_s)
            except ApiError as exc:
                if exc.status < 500 and exc.status != 429:
                    raise  # the job is gone or we may not see it: waiting will not help
                self.request_errors[exc.kind] += 1
                continue
            except ApiFailure as exc:
                self.request_errors[exc.kind] += 1
                continue
            outcome.status = job.status
        return job

    async def _settle(self, outcome: JobOutcome, job: Job) -> None:
        outcome.status = job.status
        if job.status == "DONE":
            result = await self.client.get_result(job.id)
            outcome.result = _summary_of(result)
        elif job.status == "FAILED":
            code = job.error.code if job.error else "unknown"
            outcome.error = f"job {code}"
            outcome.detail = job.error.message if job.error else None
        outcome.finished_at = self.now()

    def _fail(self, outcome: JobOutcome, exc: Exception) -> None:
        outcome.error = exc.kind if isinstance(exc, ApiFailure) else "unexpected response"
        outcome.detail = str(exc)

    def _poll_interval(self) -> float:
        base = (
            self.timers.poll_with_stream_s if self._stream_up else self.timers.poll_without_stream_s
        )
        return base * random.uniform(0.8, 1.2)  # spread polls of jobs submitted together

    async def _follow_events(self) -> None:
        backoff = 0.5
        while True:
            try:
                async for event in self.client.events(on_open=self._stream_opened):
                    backoff = 0.5
                    job_id = settled_job_id(event)
                    if job_id is not None:
                        self._signals.notify(job_id)
            except ApiFailure as exc:
                self.stream_errors[exc.kind] += 1
            self._stream_up = False
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.timers.reconnect_max_s)

    def _stream_opened(self) -> None:
        if self.stream_opened:  # a reconnect: what settled meanwhile was not streamed to us
            self._signals.wake_all()
        self._stream_up = self.stream_opened = True
        self._signals.open.set()


def _summary_of(result: dict[str, object]) -> str | None:
    """`Egyptian cat 0.82`; the result body may wrap the inference result in `result`."""
    inner = result.get("result", result)
    if not isinstance(inner, dict):
        return None
    try:
        return describe_result(inner)
    except (KeyError, TypeError, ValueError, IndexError):
        return None


async def wait_at_most(event: asyncio.Event, seconds: float) -> None:
    """Until the event is set or the time is up. asyncio.timeout, not wait_for: Python 3.11's
    wait_for can swallow a cancellation that arrives as the event is set."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()
