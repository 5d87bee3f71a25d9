"""The dispatcher's decisions on fakes: which events go to which target, the attempts and
their record, the dead letter, and the stable `webhook-id`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from datetime import UTC, datetime

from standardwebhooks import Webhook

from inference_common.events import EventType, new_event, to_record
from inference_service.domain.webhooks import (
    Backoff,
    Callback,
    DeliveryState,
    EventsWanted,
    Subscription,
)
from inference_service.ports import Record, Response
from inference_service.service_layer.webhooks import WebhookDispatching
from tests.unit.service.builders import record
from tests.unit.service.fakes import FakeDeadLetters, FakeJobStore, FakeSender, FakeWebhookStore

JOB = "0123456789abcdef0123456789abcdef"
REQUEST = {"job_id": JOB, "execution_id": "e1", "attempt": 1, "model": "m"}
SUBSCRIPTION = Subscription(
    "wh_" + "1" * 32,
    "alice",
    "https://all.example/",
    EventsWanted.ALL,
    "whsec_QUJD",
    datetime.now(UTC),
)


def dispatching(
    sender: FakeSender, store: FakeWebhookStore, attempts: int = 3
) -> tuple[WebhookDispatching, FakeDeadLetters]:
    letters = FakeDeadLetters()
    return (
        WebhookDispatching(
            store,
            FakeJobStore(),
            sender,
            letters,
            Backoff(0.001, 0.001, attempts),
            max_job_attempts=3,
        ),
        letters,
    )


def with_callback(events: EventsWanted = EventsWanted.TERMINAL) -> FakeWebhookStore:
    store = FakeWebhookStore()
    store.callbacks[JOB] = Callback(JOB, "alice", "https://hooks.example/in", events)
    return store


def test_only_the_terminal_event_by_default() -> None:
    sender, store = FakeSender(), with_callback()
    hooks, _letters = dispatching(sender, store)

    async def scenario() -> None:
        stop = asyncio.Event()
        assert await hooks.handle(record(EventType.STARTED, REQUEST), stop)
        # A retryable failure on attempt 1 of 3 does not end the job.
        retried = record(
            EventType.FAILED, REQUEST, error={"code": "x", "message": "m", "retryable": True}
        )
        assert await hooks.handle(retried, stop)
        assert await hooks.handle(record(EventType.COMPLETED, REQUEST), stop)

    asyncio.run(scenario())
    assert len(sender.requests) == 1
    url, body, headers = sender.requests[0]
    assert url == "https://hooks.example/in"
    event = Webhook(store.secrets["alice"]).verify(body, headers)
    assert event["type"] == EventType.COMPLETED.value and event["subject"] == JOB


def job_event(kind: EventType, job_id: str, data: dict[str, object]) -> Record:
    kafka = to_record(new_event(kind, "/inference-service", job_id, {"job_id": job_id, **data}))
    return Record("jobs", 0, 1, kafka.key, kafka.value, list(kafka.headers))


def created(callback: dict[str, str] | None) -> Record:
    data: dict[str, object] = {
        "job_id": JOB,
        "name": "n",
        "model": "m",
        "task": "classification",
        "options": {},
        "owner": "alice",
        "status": "NEW",
        "image": None,
        "created_at": "2026-11-23T12:00:00Z",
    }
    if callback is not None:
        data["callback"] = callback
    return job_event(EventType.CREATED, JOB, data)


def test_the_created_event_says_whether_there_is_a_callback_without_a_read() -> None:
    for callback in (None, {"url": "https://hooks.example/in", "events": "terminal"}):
        sender, store = FakeSender(), FakeWebhookStore()
        hooks, _letters = dispatching(sender, store)

        async def scenario(hooks: WebhookDispatching, announced: Record) -> None:
            assert await hooks.handle(announced, asyncio.Event())
            assert await hooks.handle(record(EventType.COMPLETED, REQUEST), asyncio.Event())

        asyncio.run(scenario(hooks, created(callback)))
        assert store.callback_reads == 0
        assert [url for url, _b, _h in sender.requests] == ([callback["url"]] if callback else [])


def test_a_job_seen_first_after_a_restart_has_its_callback_read_once() -> None:
    sender, store = FakeSender(), with_callback()
    hooks, _letters = dispatching(sender, store)

    async def scenario() -> None:
        for kind in (EventType.STARTED, EventType.COMPLETED):
            assert await hooks.handle(record(kind, REQUEST), asyncio.Event())

    asyncio.run(scenario())
    assert store.callback_reads == 1 and len(sender.requests) == 1


def test_every_event_when_asked_and_subscriptions_too() -> None:
    sender, store = FakeSender(), with_callback(EventsWanted.ALL)
    store.subscribed[SUBSCRIPTION.id] = SUBSCRIPTION
    hooks, _letters = dispatching(sender, store)

    async def scenario() -> None:
        for kind in (EventType.STARTED, EventType.COMPLETED):
            assert await hooks.handle(record(kind, REQUEST), asyncio.Event())

    asyncio.run(scenario())
    assert sorted(url for url, _b, _h in sender.requests) == [
        "https://all.example/",
        "https://all.example/",
        "https://hooks.example/in",
        "https://hooks.example/in",
    ]
    for url, body, headers in sender.requests:
        if url == SUBSCRIPTION.url:  # signed with the subscription's own secret
            Webhook(SUBSCRIPTION.secret).verify(body, headers)


def test_a_failure_is_retried_and_each_attempt_recorded_under_one_id() -> None:
    sender = FakeSender(
        Response(500, "answered 500"), Response(None, "timed out"), Response(200, None)
    )
    store = with_callback()
    hooks, letters = dispatching(sender, store)
    assert asyncio.run(hooks.handle(record(EventType.COMPLETED, REQUEST), asyncio.Event()))
    assert len({headers["webhook-id"] for _u, _b, headers in sender.requests}) == 1
    (delivery,) = store.saved.values()
    assert delivery.state is DeliveryState.DELIVERED
    assert [(a.attempt, a.status_code) for a in delivery.attempts] == [
        (1, 500),
        (2, None),
        (3, 200),
    ]
    assert letters.sent == []


def test_the_last_failure_is_dead_lettered_and_recorded() -> None:
    sender, store = FakeSender(Response(503, "answered 503")), with_callback()
    hooks, letters = dispatching(sender, store, attempts=2)
    completed = record(EventType.COMPLETED, REQUEST)
    assert asyncio.run(hooks.handle(completed, asyncio.Event()))
    (delivery,) = store.saved.values()
    assert delivery.state is DeliveryState.DEAD and len(delivery.attempts) == 2
    ((dead, reason),) = letters.sent
    assert dead is completed
    assert "failed after 2 attempts: answered 503" in reason


def test_a_settled_delivery_is_not_made_again_and_a_second_end_is_the_same_delivery() -> None:
    sender, store = FakeSender(), with_callback()
    hooks, _letters = dispatching(sender, store)

    async def scenario() -> None:
        await hooks.handle(record(EventType.COMPLETED, REQUEST), asyncio.Event())
        # A duplicate completion from another executor: the job's end was already told.
        await hooks.handle(record(EventType.COMPLETED, REQUEST), asyncio.Event())

    asyncio.run(scenario())
    assert len(sender.requests) == 1


def test_stopped_between_attempts_leaves_the_delivery_pending_for_the_restart() -> None:
    sender = FakeSender(Response(500, "answered 500"), Response(200, None))
    store = with_callback()
    letters = FakeDeadLetters()
    slow = WebhookDispatching(
        store, FakeJobStore(), sender, letters, Backoff(30, 30, 3), max_job_attempts=3
    )
    completed = record(EventType.COMPLETED, REQUEST)

    async def scenario() -> bool:
        stop = asyncio.Event()
        handling = asyncio.create_task(slow.handle(completed, stop))
        while not sender.requests:
            await asyncio.sleep(0.001)
        stop.set()
        return await handling

    assert asyncio.run(scenario()) is False
    (pending,) = store.saved.values()
    assert pending.state is DeliveryState.PENDING and len(pending.attempts) == 1
    # After the restart: the event again, the second attempt under the same id.
    again, _letters = dispatching(sender, store)
    assert asyncio.run(again.handle(completed, asyncio.Event()))
    (delivered,) = store.saved.values()
    assert delivered.state is DeliveryState.DELIVERED and len(delivered.attempts) == 2
    assert len({headers["webhook-id"] for _u, _b, headers in sender.requests}) == 1
    body = json.loads(sender.requests[-1][1])
    assert body["subject"] == JOB


def test_a_job_without_targets_costs_no_delivery() -> None:
    sender, store = FakeSender(), FakeWebhookStore()
    hooks, _letters = dispatching(sender, store)
    assert asyncio.run(hooks.handle(record(EventType.COMPLETED, REQUEST), asyncio.Event()))
    assert sender.requests == [] and store.saved == {}


class SlowSender(FakeSender):
    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Response:
        await asyncio.sleep(0.01)  # both ends are in flight at once
        return await super().post(url, body, headers)


def test_two_ends_of_one_job_at_once_are_one_delivery() -> None:
    sender, store = SlowSender(), with_callback()
    hooks, _letters = dispatching(sender, store)
    cancelled = new_event(
        EventType.CANCELLED,
        "/inference-service",
        JOB,
        {"job_id": JOB, "reason": "r", "cancelled_at": "2026-11-23T12:00:00Z"},
    )
    kafka = to_record(cancelled)
    cancel = Record("jobs", 0, 1, kafka.key, kafka.value, list(kafka.headers))

    async def scenario() -> list[bool]:
        stop = asyncio.Event()
        return list(
            await asyncio.gather(
                hooks.handle(cancel, stop),
                hooks.handle(record(EventType.COMPLETED, REQUEST), stop),
            )
        )

    assert asyncio.run(scenario()) == [True, True]
    assert len(sender.requests) == 1


def test_a_deleted_job_leaves_no_callback_or_delivery_behind() -> None:
    sender, store = FakeSender(), with_callback(EventsWanted.ALL)
    other = "f" * 32
    store.callbacks[other] = Callback(other, "alice", "https://hooks.example/b", EventsWanted.ALL)
    hooks, _letters = dispatching(sender, store)
    at = "2026-11-23T12:00:00Z"

    async def scenario() -> None:
        stop = asyncio.Event()
        reason: dict[str, object] = {"reason": "the job was deleted", "cancelled_at": at}
        assert await hooks.handle(job_event(EventType.CANCELLED, JOB, reason), stop)
        assert await hooks.handle(record(EventType.STARTED, {**REQUEST, "job_id": other}), stop)
        assert len(await store.deliveries(JOB)) == 1
        assert await hooks.handle(job_event(EventType.DELETED, JOB, {"deleted_at": at}), stop)
        assert await store.deliveries(JOB) == [] and JOB not in store.callbacks
        assert len(await store.deliveries(other)) == 1 and other in store.callbacks
        # A late result of the deleted job makes no delivery and no record.
        assert await hooks.handle(record(EventType.COMPLETED, REQUEST), stop)
        assert await store.deliveries(JOB) == []

    asyncio.run(scenario())
    assert [url for url, _b, _h in sender.requests] == [
        "https://hooks.example/in",  # cancelled
        "https://hooks.example/b",  # the other job's started
        "https://hooks.example/in",  # deleted
    ]


def test_a_deleted_jobs_records_go_only_once_its_retrying_delivery_is_settled() -> None:
    # The cancel's first attempt fails: it waits for its retry while `deleted` is delivered.
    sender = FakeSender(Response(500, None), Response(200, None))
    store = with_callback(EventsWanted.ALL)
    hooks, _letters = dispatching(sender, store)
    at = "2026-11-23T12:00:00Z"
    reason: dict[str, object] = {"reason": "the job was deleted", "cancelled_at": at}

    async def scenario() -> None:
        stop = asyncio.Event()
        cancelled = asyncio.create_task(
            hooks.handle(job_event(EventType.CANCELLED, JOB, reason), stop)
        )
        while not sender.requests:  # its first attempt made (turns of the loop, not time)
            await asyncio.sleep(0)
        deleted = await hooks.handle(job_event(EventType.DELETED, JOB, {"deleted_at": at}), stop)
        assert deleted and await cancelled

    asyncio.run(scenario())
    assert len(sender.requests) == 3  # the cancel twice, the deletion once
    # Nothing saved after the records were removed: the retried delivery was settled first.
    assert store.saved == {} and JOB not in store.callbacks


def test_events_under_way_at_once_share_one_read_of_the_subscriptions() -> None:
    sender, store = FakeSender(), FakeWebhookStore()
    hooks, _letters = dispatching(sender, store)

    async def scenario() -> None:
        stop = asyncio.Event()
        jobs = [f"{n:032x}" for n in range(50)]
        events = [record(EventType.COMPLETED, {**REQUEST, "job_id": job}) for job in jobs]
        assert all(await asyncio.gather(*(hooks.handle(event, stop) for event in events)))

    asyncio.run(scenario())
    assert store.subscription_reads == 1
