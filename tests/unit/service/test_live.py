"""The live feed: an owner it cannot look up now is looked up again, never remembered as
nobody's (a stream that misses a job's events waits for its client's next poll)."""

from __future__ import annotations

import asyncio

from inference_common.events import EventType
from inference_service.ports import StoreUnavailable
from inference_service.service_layer.live import LiveEvents
from tests.unit.service.builders import record

JOB = "0123456789abcdef0123456789abcdef"
REQUEST = {"job_id": JOB, "execution_id": "e1", "attempt": 1, "model": "m"}


def test_an_owner_lookup_that_fails_is_tried_again_with_the_next_event() -> None:
    answers: list[str | Exception | None] = [StoreUnavailable("away"), None, "alice"]

    async def owner_of(job_id: str) -> str | None:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def scenario() -> list[str]:
        live = LiveEvents(owner_of, max_attempts=3)
        mine = live.subscribe("alice")
        job = live.subscribe("alice", JOB)
        for kind in (EventType.STARTED, EventType.STARTED, EventType.COMPLETED):
            await live.dispatch(record(kind, REQUEST))
        seen = []
        while True:
            try:
                event = await mine.next(0.01)
            except TimeoutError:
                break
            assert event is not None
            seen.append(event.type)
        assert (await job.next(0.01)) is not None  # the job's own stream got them all
        return seen

    assert asyncio.run(scenario()) == [EventType.COMPLETED.value]
