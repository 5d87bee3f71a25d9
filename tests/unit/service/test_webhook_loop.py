"""The webhook loop on fakes: a target that hangs holds up only its own deliveries, and the
offsets committed never pass an event whose deliveries are not settled."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Mapping, Sequence

import pytest

from inference_common.events import EventType
from inference_service.domain.webhooks import Backoff, Callback, EventsWanted
from inference_service.ports import DeadLetters, GroupRecords, Record, Response, WebhookSender
from inference_service.service_layer.webhooks import WebhookDispatching
from inference_service.workers.loops import WebhookLoop
from tests.unit.service.builders import record
from tests.unit.service.fakes import FakeDeadLetters, FakeJobStore, FakeWebhookStore

SLOW, FAST = "1" * 32, "2" * 32
HANGING_URL, GOOD_URL = "https://hangs.example/", "https://answers.example/"


class FakeRecords:
    """A consumer's records from a script of batches; its commits, in order."""

    def __init__(self, *batches: list[Record]) -> None:
        self.batches = list(batches)
        self.commits: list[dict[tuple[str, int], int]] = []

    async def next_batch(self, max_records: int, timeout: float) -> list[Record]:
        if not self.batches:
            await asyncio.sleep(timeout)
            return []
        return self.batches.pop(0)[:max_records]

    async def commit(self, positions: Mapping[tuple[str, int], int]) -> None:
        if positions:
            self.commits.append(dict(positions))

    async def rewind(self, records: Sequence[Record]) -> None:
        raise AssertionError("the loop never rewinds")

    async def close(self) -> None:
        return None


class HangingTarget:
    """Answers 200 at once, except at HANGING_URL, which answers only when released."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.delivered: list[str] = []

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Response:
        if url == HANGING_URL:
            await self.release.wait()
        self.delivered.append(url)
        return Response(200, None)


async def until(condition: Callable[[], bool]) -> None:
    """Turns of the event loop until `condition` holds; a bound on failure, not a timing."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("never happened")


def looping(store: FakeWebhookStore, sender: WebhookSender, records: FakeRecords) -> WebhookLoop:
    letters: DeadLetters = FakeDeadLetters()
    source: GroupRecords = records
    dispatching = WebhookDispatching(
        store, FakeJobStore(), sender, letters, Backoff(0.01, 0.01, 3), max_job_attempts=3
    )
    return WebhookLoop(dispatching, source, max_in_flight=100, poll_timeout=0.01)


def completed(job_id: str, offset: int) -> Record:
    request = {"job_id": job_id, "execution_id": "e1", "attempt": 1, "model": "m"}
    return dataclasses.replace(record(EventType.COMPLETED, request), offset=offset)


def test_a_hanging_target_holds_up_only_its_own_delivery() -> None:
    store = FakeWebhookStore()
    store.callbacks[SLOW] = Callback(SLOW, "alice", HANGING_URL, EventsWanted.TERMINAL)
    store.callbacks[FAST] = Callback(FAST, "bob", GOOD_URL, EventsWanted.TERMINAL)
    # Two batches: the second is read while the first one's delivery still hangs.
    records = FakeRecords([completed(SLOW, 10)], [completed(FAST, 11)])
    target = HangingTarget()
    loop = looping(store, target, records)

    async def scenario() -> None:
        stop = asyncio.Event()
        running = asyncio.create_task(loop.run(stop))
        await until(lambda: GOOD_URL in target.delivered)
        # Delivered behind a hanging one; nothing committed past the unsettled event.
        assert all(positions[("results", 0)] <= 10 for positions in records.commits)
        target.release.set()
        await until(lambda: bool(records.commits) and records.commits[-1][("results", 0)] == 12)
        stop.set()
        await running

    asyncio.run(scenario())
    assert target.delivered == [GOOD_URL, HANGING_URL]


class BrokenStore(FakeWebhookStore):
    async def delivery(self, delivery_id: str) -> None:
        raise ValueError("a bug")


def test_a_delivery_that_fails_unexpectedly_ends_the_loop_and_commits_nothing() -> None:
    store = BrokenStore()
    store.callbacks[FAST] = Callback(FAST, "bob", GOOD_URL, EventsWanted.TERMINAL)
    records = FakeRecords([completed(FAST, 11)])
    loop = looping(store, HangingTarget(), records)
    with pytest.raises(RuntimeError) as ended:
        asyncio.run(loop.run(asyncio.Event()))
    assert isinstance(ended.value.__cause__, ValueError)
    assert records.commits == []  # consumed again after the runtime restarts the loop
