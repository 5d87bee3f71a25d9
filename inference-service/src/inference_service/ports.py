"""The ports the use cases need, as Protocols: a job store, a lease store, the event bus.

The image store's port is shared with the executor: `inference_common.image_store`. The
adapters (adapters/) implement these for MongoDB, FerretDB and Kafka; the unit tests' fakes
for memory.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from inference_service.domain.batch import Batch
from inference_service.domain.cursor import Cursor
from inference_service.domain.events import OutboxEvent
from inference_service.domain.job import Change, Job, JobFilter, RetentionPolicy
from inference_service.domain.webhooks import Callback, Delivery, Subscription


class StoreError(Exception):
    """The database failed the operation; it may be tried again."""


class StoreUnavailable(StoreError):
    """The database did not answer: the write may or may not have landed (the API: 503)."""


class BusError(Exception):
    """Kafka failed the operation; it may be tried again."""


@dataclass(frozen=True)
class KeyHolder:
    """The job an Idempotency-Key was claimed for, and when."""

    job_id: str
    at: datetime
    # `<replica name>/<process>` of the claiming request (inference_common.replica).
    claimant: str | None = None


@dataclass(frozen=True)
class Outbox:
    """A job's events waiting to be published, in order, and what the relay does after."""

    job_id: str
    events: tuple[OutboxEvent, ...]
    deleted: bool
    image_uri: str | None


class JobStore(Protocol):
    # --- jobs ---
    async def get(self, job_id: str) -> Job | None:
        """The job as stored, deleted or not (the outbox and applied ids left out)."""
        ...

    async def add(self, change: Change) -> None:
        """Insert a new job with its events."""
        ...

    async def save(self, change: Change) -> Outbox | None:
        """Write the change and append its events, if the job is still at `change.before`'s
        version (a compare-and-set); None when another writer got there first. The job's
        pending events after the write, in order (earlier ones not yet published too)."""
        ...

    async def page(
        self, owner: str, where: JobFilter, after: Cursor | None, limit: int
    ) -> list[Job]:
        """The owner's jobs that are not deleted, newest first, at most `limit`."""
        ...

    async def overdue(self, at: datetime, limit: int) -> list[Job]:
        """Active jobs whose deadline passed before `at`."""
        ...

    async def purgeable(self, at: datetime, policy: RetentionPolicy, limit: int) -> list[Job]:
        """Finished jobs holding an image or a result that `policy` lets go at `at` (the use
        case asks each job again), at most `limit`."""
        ...

    async def statuses(self, job_ids: Sequence[str]) -> dict[str, str]:
        """Each job's status (`DELETED` for a deleted one); a job not stored is left out.
        Read by `_id`: a batch's progress."""
        ...

    # --- the outbox ---
    async def pending_outboxes(self, limit: int) -> list[Outbox]:
        """Jobs with events still to publish: the relay's recovery scan."""
        ...

    async def remove_delivered(self, job_id: str, delivered: Sequence[OutboxEvent]) -> None:
        """Drop exactly these events from the job's outbox (the first ones, in order)."""
        ...

    async def purge_deleted(self, job_id: str) -> bool:
        """Remove a deleted job whose events are all out; False if it is not (yet) so."""
        ...

    # --- idempotency keys: reserved before the job is written, released when it is deleted
    async def key_holder(self, owner: str, key: str) -> KeyHolder | None: ...

    async def claim_key(
        self, owner: str, key: str, job_id: str, at: datetime, claimant: str | None = None
    ) -> bool:
        """Reserve the key for `job_id`; False when another request holds it."""
        ...

    async def release_key(self, owner: str, key: str, job_id: str) -> None:
        """Free the key if `job_id` still holds it."""
        ...


class BatchStore(Protocol):
    """Batches, one document each, read and written by `_id`."""

    async def get(self, batch_id: str) -> Batch | None: ...

    async def add(self, batch: Batch) -> bool:
        """Insert; False when a batch with its id exists (a concurrent retry wrote it)."""
        ...

    async def settle(self, batch_id: str, statuses: Mapping[str, str]) -> None:
        """Record these jobs' final statuses; a write lost to a race is only a cache miss."""
        ...

    async def delete(self, batch_id: str) -> None: ...


class LeaseStore(Protocol):
    async def acquire(self, name: str, holder: str, ttl_seconds: float) -> bool:
        """Take or renew the lease; False while another holder's lease is still valid."""
        ...

    async def release(self, name: str, holder: str) -> None: ...


class WebhookStore(Protocol):
    """Callbacks, subscriptions, secrets and deliveries. Every write goes by `_id`, and each
    delivery has one writer at a time (the dispatcher that owns its event's partition), so
    it needs no atomic update (FerretDB has none)."""

    async def add_callback(self, callback: Callback) -> None:
        """Keep the job's callback (written before the job: its events find it)."""
        ...

    async def callback(self, job_id: str) -> Callback | None: ...

    async def add_subscription(self, subscription: Subscription) -> None: ...

    async def subscriptions(self, owner: str | None = None) -> list[Subscription]:
        """The owner's subscriptions, or everyone's, oldest first."""
        ...

    async def remove_subscription(self, owner: str, subscription_id: str) -> bool: ...

    async def secret(self, owner: str, new: str) -> str:
        """The owner's callback secret: the one kept, else `new`, kept from now on."""
        ...

    async def delivery(self, delivery_id: str) -> Delivery | None: ...

    async def save_delivery(self, delivery: Delivery) -> None: ...

    async def deliveries(self, job_id: str) -> list[Delivery]:
        """The job's deliveries, oldest first."""
        ...

    async def forget_job(self, job_id: str) -> None:
        """Remove the job's callback and deliveries: it was deleted."""
        ...


@dataclass(frozen=True)
class Response:
    """What a webhook target answered: a status, or why there was none."""

    status_code: int | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class WebhookSender(Protocol):
    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Response:
        """One POST; never raises for the target's faults (they are the Response)."""
        ...


class EventPublisher(Protocol):
    async def publish(self, events: Sequence[OutboxEvent]) -> dict[str, str | None]:
        """Send and wait for Kafka's answers: event id -> None (delivered) or the error."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class Record:
    """One message as consumed: where it was, and what it held."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]

    @property
    def where(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


class DeadLetters(Protocol):
    async def send(self, record: Record, error: str) -> None:
        """Set a message aside with the reason; raises BusError when Kafka did not take it."""
        ...

    async def close(self) -> None: ...


class RecordSource(Protocol):
    async def next_batch(self, max_records: int, timeout: float) -> list[Record]:
        """Waits at most `timeout` for the first record, then takes what is there."""
        ...

    async def close(self) -> None: ...


class GroupRecords(RecordSource, Protocol):
    """A consumer-group member's records: offsets committed once they are applied."""

    async def commit(self, positions: Mapping[tuple[str, int], int]) -> None:
        """Commit each (topic, partition)'s next offset to read."""
        ...

    async def rewind(self, records: Sequence[Record]) -> None:
        """Read these again (each partition from its first one here)."""
        ...
