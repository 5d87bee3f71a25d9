"""Webhooks: the API's use cases (subscriptions, secrets, a job's deliveries) and the
dispatcher's (deliver what one consumed event owes to each target, retrying).

The dispatcher is at-least-once with a stable `webhook-id`: each attempt is recorded after it
is made, so a crash between the two repeats that attempt with the same id, and a delivery
recorded as done is never made again. A consumed event is committed only once every
delivery it owes is `delivered` or `dead`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator
from dataclasses import KW_ONLY, dataclass, field
from datetime import timedelta
from typing import Final

from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.formats.json import JSONFormat

from inference_common.events import EventType
from inference_service.domain.clock import now
from inference_service.domain.webhook_urls import TargetPolicy
from inference_service.domain.webhooks import (
    CALLBACK,
    Attempt,
    Backoff,
    Callback,
    Delivery,
    DeliveryState,
    EventsWanted,
    Subscription,
    Target,
    delivery_id,
    new_secret,
    new_subscription_id,
    signature,
    wanted,
)
from inference_service.ports import (
    DeadLetters,
    JobStore,
    Record,
    WebhookSender,
    WebhookStore,
)
from inference_service.service_layer.jobs import JobService
from inference_service.service_layer.live import decode_record, ends_job_stream

log = logging.getLogger(__name__)

_FORMAT: Final = JSONFormat()
# How long the dispatcher keeps the list of subscriptions: a new one applies to events
# consumed from about this long after it was made.
SUBSCRIPTIONS_TTL: Final = 1.0
# Jobs whose callback (or its absence) the dispatcher remembers.
KNOWN_CALLBACKS: Final = 10_000


class WebhookNotFound(LookupError):
    def __init__(self, webhook_id: str) -> None:
        super().__init__(f"no webhook {webhook_id}")


class Webhooks:
    """What the API does with webhooks; every URL is checked against the policy first."""

    def __init__(self, store: WebhookStore, jobs: JobService, policy: TargetPolicy) -> None:
        self.store = store
        self.jobs = jobs
        self.policy = policy

    async def subscribe(self, owner: str, url: str, events: EventsWanted) -> Subscription:
        self.policy.check_url(url)
        subscription = Subscription(
            id=new_subscription_id(),
            owner=owner,
            url=url,
            events=events,
            secret=new_secret(),
            created_at=now(),
        )
        await self.store.add_subscription(subscription)
        return subscription

    async def subscriptions(self, owner: str) -> list[Subscription]:
        return await self.store.subscriptions(owner)

    async def unsubscribe(self, owner: str, webhook_id: str) -> None:
        if not await self.store.remove_subscription(owner, webhook_id):
            raise WebhookNotFound(webhook_id)

    async def secret(self, owner: str) -> str:
        return await self.store.secret(owner, new_secret())

    async def job_deliveries(
        self, owner: str, job_id: str
    ) -> tuple[tuple[str, EventsWanted] | None, list[Delivery]]:
        await self.jobs.get(owner, job_id)  # 404 for another client's job
        callback = await self.store.callback(job_id)
        found = (callback.url, callback.events) if callback is not None else None
        return found, await self.store.deliveries(job_id)


@dataclass(eq=False)
class WebhookDispatching:
    store: WebhookStore
    jobs: JobStore
    sender: WebhookSender
    dead_letters: DeadLetters
    backoff: Backoff
    _: KW_ONLY
    max_job_attempts: int
    # Cached for SUBSCRIPTIONS_TTL seconds: (when read, what was read).
    _subscriptions: tuple[float, list[Subscription]] = field(
        default_factory=lambda: (float("-inf"), []), init=False
    )
    _reading_subscriptions: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)
    _secrets: dict[str, str] = field(default_factory=dict, init=False, repr=False)  # signing keys
    _callbacks: OrderedDict[str, Callback | None] = field(default_factory=OrderedDict, init=False)
    _in_flight: dict[str, tuple[asyncio.Lock, int]] = field(default_factory=dict, init=False)
    # Events of each job whose deliveries are under way here, and their end announced: a
    # deleted job's records go only once none of its deliveries is still being made.
    _busy: Counter[str] = field(default_factory=Counter, init=False)
    _quiet: asyncio.Condition = field(default_factory=asyncio.Condition, init=False)
    # Deleted jobs whose records are gone: a late event of one makes no delivery.
    _forgotten: OrderedDict[str, None] = field(default_factory=OrderedDict, init=False)

    async def handle(self, record: Record, stop: asyncio.Event) -> bool:
        """Deliver what the event owes; False when stopped before all of it was settled (the
        event is then consumed again after the restart)."""
        decoded = decode_record(record)
        if decoded is None:
            return True  # not ours: the folder sets results aside; nothing to deliver
        envelope, cloudevent = decoded
        job_id = envelope.subject
        if job_id in self._forgotten:
            return True
        if envelope.type is EventType.CREATED:
            self._remember(job_id, _announced(job_id, envelope.data))
        terminal = ends_job_stream(envelope, self.max_job_attempts)
        if envelope.type is EventType.DELETED:
            # The end of the job's life, not of its work: its terminal event came before.
            terminal = False
        self._busy[job_id] += 1
        try:
            owner, targets = await self._targets(job_id, envelope.data)
            settled = [
                await self._deliver(
                    record,
                    cloudevent=cloudevent,
                    owner=owner,
                    target=target,
                    terminal=terminal,
                    stop=stop,
                )
                for target in targets
                if wanted(target, terminal)
            ]
        finally:
            self._busy[job_id] -= 1
            if self._busy[job_id] <= 0:
                del self._busy[job_id]
            async with self._quiet:
                self._quiet.notify_all()
        if envelope.type is EventType.DELETED and all(settled):
            return await self._forget(job_id, stop)
        return all(settled)

    async def _forget(self, job_id: str, stop: asyncio.Event) -> bool:
        """A deleted job leaves no callback or delivery behind: removed once its other
        deliveries here (a `completed` still retrying) are settled. False when stopped first."""
        async with self._quiet:
            await self._quiet.wait_for(lambda: self._busy[job_id] <= 0 or stop.is_set())
        if stop.is_set():
            return False
        await self.store.forget_job(job_id)
        self._callbacks.pop(job_id, None)
        self._forgotten[job_id] = None
        if len(self._forgotten) > KNOWN_CALLBACKS:
            self._forgotten.popitem(last=False)
        return True

    async def _targets(self, job_id: str, data: dict[str, object]) -> tuple[str, list[Target]]:
        callback = await self._callback(job_id)
        subscriptions = await self._all_subscriptions()
        owner = callback.owner if callback is not None else None
        if owner is None and subscriptions:
            owner = await self._owner(job_id, data)
        if owner is None:
            return "", []
        targets = []
        if callback is not None:
            targets.append(
                Target(CALLBACK, callback.url, callback.events, await self._secret(owner))
            )
        targets += [
            Target(s.id, s.url, s.events, s.secret) for s in subscriptions if s.owner == owner
        ]
        return owner, targets

    async def _callback(self, job_id: str) -> Callback | None:
        """Known from the job's `created` event without a read; otherwise (the event was
        consumed before a restart) read once by `_id`; then remembered."""
        if job_id in self._callbacks:
            self._callbacks.move_to_end(job_id)
            return self._callbacks[job_id]
        callback = await self.store.callback(job_id)
        self._remember(job_id, callback)
        return callback

    def _remember(self, job_id: str, callback: Callback | None) -> None:
        self._callbacks[job_id] = callback
        self._callbacks.move_to_end(job_id)
        if len(self._callbacks) > KNOWN_CALLBACKS:
            self._callbacks.popitem(last=False)

    async def _owner(self, job_id: str, data: dict[str, object]) -> str | None:
        if isinstance(data.get("owner"), str):
            return str(data["owner"])  # `created` names it
        job = await self.jobs.get(job_id)
        return job.owner if job is not None else None

    async def _all_subscriptions(self) -> list[Subscription]:
        # One read however many events want the list at once (hundreds may be under way, and
        # all of them retry together after a database outage); the others wait for it.
        async with self._reading_subscriptions:
            read_at, subscriptions = self._subscriptions
            if time.monotonic() - read_at > SUBSCRIPTIONS_TTL:
                subscriptions = await self.store.subscriptions()
                self._subscriptions = (time.monotonic(), subscriptions)
        return subscriptions

    async def _secret(self, owner: str) -> str:
        if owner not in self._secrets:
            self._secrets[owner] = await self.store.secret(owner, new_secret())
        return self._secrets[owner]

    async def _deliver(
        self,
        record: Record,
        *,
        cloudevent: BaseCloudEvent,
        owner: str,
        target: Target,
        terminal: bool,
        stop: asyncio.Event,
    ) -> bool:
        job_id = str(cloudevent.get_subject())
        message_id = delivery_id(job_id, str(cloudevent.get_id()), target.name, terminal)
        async with self._only_one(message_id):
            delivery = await self.store.delivery(message_id)
            if delivery is None:
                delivery = Delivery.new(
                    message_id,
                    job_id=job_id,
                    owner=owner,
                    event=cloudevent,
                    target=target,
                    at=now(),
                )
            elif delivery.state is not DeliveryState.PENDING:
                return True
            body = _FORMAT.write(cloudevent).decode()
            while True:
                delivery, delay = await self._attempt(delivery, target, body)
                if delay is None:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                if stop.is_set():
                    return False
            if delivery.state is DeliveryState.DEAD:
                last = delivery.attempts[-1]
                reason = (
                    f"webhook delivery to {target.url} failed after {last.attempt} attempts: "
                    f"{last.error}"
                )
                log.warning(reason, extra={"job_id": job_id, "webhook_id": message_id})
                # Set aside before the record says so: a crash between the two sends the
                # dead letter twice rather than never.
                await self.dead_letters.send(record, reason)
            await self.store.save_delivery(delivery)
            return True

    async def _attempt(
        self, delivery: Delivery, target: Target, body: str
    ) -> tuple[Delivery, float | None]:
        """One POST, recorded; the delay before the next one, None when there is none."""
        number = len(delivery.attempts) + 1
        at = now()
        headers = {
            "webhook-id": delivery.id,
            "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": signature(target.secret, delivery.id, at, body),
        }
        started = time.monotonic()
        response = await self.sender.post(target.url, body.encode(), headers)
        attempt = Attempt(
            attempt=number,
            at=at,
            duration_ms=round((time.monotonic() - started) * 1000, 1),
            status_code=response.status_code,
            error=response.error,
        )
        if response.ok:
            return delivery.tried(attempt, DeliveryState.DELIVERED, None), None
        if number >= self.backoff.max_attempts:
            return delivery.tried(attempt, DeliveryState.DEAD, None), None
        delay = self.backoff.delay(number)
        retrying = delivery.tried(attempt, DeliveryState.PENDING, at + timedelta(seconds=delay))
        await self.store.save_delivery(retrying)
        return retrying, delay

    @contextlib.asynccontextmanager
    async def _only_one(self, message_id: str) -> AsyncIterator[None]:
        """A job's end may come twice at once (a cancel and a completion, on two topics):
        one delivery at a time per id in this process. The lock is dropped with its last
        user, waiting ones included."""
        lock, users = self._in_flight.get(message_id, (asyncio.Lock(), 0))
        self._in_flight[message_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._in_flight[message_id]
            if users == 1:
                del self._in_flight[message_id]
            else:
                self._in_flight[message_id] = (lock, users - 1)


def _announced(job_id: str, data: dict[str, object]) -> Callback | None:
    """The callback a `created` event names (None: the job has none)."""
    callback = data.get("callback")
    if not isinstance(callback, dict) or not isinstance(data.get("owner"), str):
        return None
    return Callback(
        job_id, str(data["owner"]), str(callback["url"]), EventsWanted(callback["events"])
    )
