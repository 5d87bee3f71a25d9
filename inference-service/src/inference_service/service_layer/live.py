"""LiveEvents: every event of both topics, fanned out to this replica's server-sent-event
subscribers of its job, or of its owner.

Nothing is replayed: a client that wants the past reads the job.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings import kafka as kafka_binding
from cloudevents.core.formats.json import JSONFormat

from inference_common.events import Envelope, EventType, InvalidEvent, to_envelope
from inference_service.ports import Record, StoreError

log = logging.getLogger(__name__)

_FORMAT: Final = JSONFormat()
_REMEMBERED: Final = 10_000
OwnerLookup = Callable[[str], Awaitable[str | None]]


@dataclass(frozen=True)
class LiveEvent:
    id: str
    type: str
    job_id: str
    owner: str | None
    structured: str
    ends_job_stream: bool


def ends_job_stream(envelope: Envelope, max_attempts: int) -> bool:
    """After this event the job changes no more (a retryable failure with attempts left
    is followed by a new attempt, so it does not end the stream)."""
    if envelope.type in (EventType.COMPLETED, EventType.CANCELLED, EventType.DELETED):
        return True
    if envelope.type is EventType.FAILED:
        error = envelope.data.get("error") or {}
        attempt = envelope.data.get("attempt", max_attempts)
        return not (error.get("retryable") and attempt < max_attempts)
    return False


class Subscription:
    def __init__(self, owner: str, job_id: str | None, size: int) -> None:
        self.owner = owner
        self.job_id = job_id
        self._queue: asyncio.Queue[LiveEvent | None] = asyncio.Queue(size)
        self.closed = False

    def offer(self, event: LiveEvent) -> None:
        if self.closed:
            return
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            # A client this far behind reconnects and re-reads the job instead.
            log.warning("subscriber of %s too slow; closing its stream", self.job_id or self.owner)
            self.close()

    def close(self) -> None:
        """End the stream now, dropping whatever is still queued."""
        if self.closed:
            return
        self.closed = True
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(None)

    def finish(self) -> None:
        """End the stream after what is already queued."""
        if self.closed:
            return
        try:
            self._queue.put_nowait(None)
            self.closed = True
        except asyncio.QueueFull:
            self.close()

    async def next(self, timeout: float) -> LiveEvent | None:
        """The next event; None once closed; TimeoutError when nothing came in `timeout`."""
        return await asyncio.wait_for(self._queue.get(), timeout)


class LiveEvents:
    def __init__(self, owner_of: OwnerLookup, max_attempts: int, *, queue_size: int = 1000):
        self.owner_of = owner_of
        self.max_attempts = max_attempts
        self.queue_size = queue_size
        self._subscriptions: set[Subscription] = set()
        self._owners: OrderedDict[str, str | None] = OrderedDict()
        self._seen: OrderedDict[str, None] = OrderedDict()
        # Set once the feed reads the topics: before that a stream would miss events.
        self.ready = asyncio.Event()

    @property
    def subscribers(self) -> int:
        return len(self._subscriptions)

    def subscribe(self, owner: str, job_id: str | None = None) -> Subscription:
        subscription = Subscription(owner, job_id, self.queue_size)
        self._subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)
        subscription.close()

    def close_all(self) -> None:
        for subscription in list(self._subscriptions):
            self.unsubscribe(subscription)

    async def dispatch(self, record: Record) -> None:
        decoded = decode_record(record)
        if decoded is None:
            return
        envelope, cloudevent = decoded
        # Owners are learnt from `created` even while nobody listens, so that a later
        # event of the job needs no lookup.
        if envelope.type is EventType.CREATED and isinstance(envelope.data.get("owner"), str):
            self._remember_owner(envelope.subject, envelope.data["owner"])
        if not self._subscriptions or self._already_seen(envelope.id):
            return
        event = LiveEvent(
            id=envelope.id,
            type=envelope.type.value,
            job_id=envelope.subject,
            owner=await self._owner(envelope.subject),
            structured=_FORMAT.write(cloudevent).decode(),
            ends_job_stream=ends_job_stream(envelope, self.max_attempts),
        )
        for subscription in list(self._subscriptions):
            if subscription.job_id == event.job_id:
                subscription.offer(event)
                if event.ends_job_stream:
                    self._subscriptions.discard(subscription)
                    subscription.finish()
            elif subscription.job_id is None and subscription.owner == event.owner:
                subscription.offer(event)

    async def _owner(self, job_id: str) -> str | None:
        if job_id in self._owners:
            self._owners.move_to_end(job_id)
            return self._owners[job_id]
        if not any(s.job_id is None for s in self._subscriptions):
            return None
        try:
            owner = await self.owner_of(job_id)
        except StoreError as exc:
            log.warning("live events: owner of %s unknown for now: %s", job_id, exc)
            return None
        if owner is not None:  # an unknown job may yet be written: ask again next time
            self._remember_owner(job_id, owner)
        return owner

    def _remember_owner(self, job_id: str, owner: str) -> None:
        self._owners[job_id] = owner
        while len(self._owners) > _REMEMBERED:
            self._owners.popitem(last=False)

    def _already_seen(self, event_id: str) -> bool:
        """At-least-once delivery repeats events; a subscriber sees each id once."""
        if event_id in self._seen:
            return True
        self._seen[event_id] = None
        while len(self._seen) > _REMEMBERED:
            self._seen.popitem(last=False)
        return False


def decode_record(record: Record) -> tuple[Envelope, BaseCloudEvent] | None:
    """The envelope and the CloudEvent a message holds; None (logged) when it is not ours."""
    headers = {name.lower(): raw or b"" for name, raw in record.headers}
    message = kafka_binding.KafkaMessage(headers=headers, key=record.key, value=record.value or b"")
    try:
        cloudevent = kafka_binding.from_kafka(message, _FORMAT)
        return to_envelope(cloudevent), cloudevent
    except (InvalidEvent, ValueError, KeyError, TypeError) as exc:
        log.debug("skipping a message that is not ours: %s", exc)
    except Exception as exc:  # the SDK raises several unrelated types for bad input
        log.debug("skipping an undecodable message: %s", exc)
    return None
