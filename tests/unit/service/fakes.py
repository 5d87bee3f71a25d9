"""In-memory fakes of the job service's ports, and the use cases wired to them.

Each fake implements its Protocol exactly (mypy checks it where `wire()` passes them), so
unit tests exercise the same use cases production runs, without MongoDB or Kafka.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from inference_common.contracts import EventSchemas
from inference_common.image_store import ImageKey, ImageMissing, ImageStore, ImageStoreUnavailable
from inference_service.api.problems import file_problem
from inference_service.domain.batch import DELETED, Batch
from inference_service.domain.catalog import ModelCatalog
from inference_service.domain.cursor import Cursor
from inference_service.domain.events import OutboxEvent
from inference_service.domain.job import Change, Job, JobFilter, RetentionPolicy, RetryPolicy
from inference_service.domain.webhook_urls import TargetPolicy
from inference_service.domain.webhooks import Callback, Delivery, Subscription
from inference_service.metrics import ServiceMetrics
from inference_service.ports import (
    BatchStore,
    DeadLetters,
    EventPublisher,
    JobStore,
    KeyHolder,
    LeaseStore,
    Outbox,
    Record,
    Response,
    WebhookStore,
)
from inference_service.service_layer.batches import BatchService
from inference_service.service_layer.folding import ResultFolding
from inference_service.service_layer.jobs import JobService, Limits
from inference_service.service_layer.relaying import OutboxRelaying
from inference_service.service_layer.retention import RetentionSweeping
from inference_service.service_layer.settled import SettledJobs
from inference_service.service_layer.sweeping import DeadlineSweeping
from inference_service.service_layer.waiting import Classifier, WaitPolicy
from inference_service.service_layer.webhooks import Webhooks
from inference_service.service_layer.writer import JobWriter, OutboxWrites

ROOT = Path(__file__).resolve().parents[3]


@dataclass
class _Stored:
    job: Job
    outbox: list[OutboxEvent] = field(default_factory=list)


class FakeJobStore:
    """Counts its operations: `reads` and `writes`, the way the database would see them."""

    def __init__(self) -> None:
        self.stored: dict[str, _Stored] = {}
        self.keys: dict[tuple[str, str], KeyHolder] = {}
        self.reads = 0
        self.scan_gate: asyncio.Event | None = None
        self.writes = 0

    async def get(self, job_id: str) -> Job | None:
        self.reads += 1
        stored = self.stored.get(job_id)
        return stored.job if stored is not None else None

    async def add(self, change: Change) -> None:
        self.writes += 1
        assert change.after.id not in self.stored
        self.stored[change.after.id] = _Stored(change.after, list(change.events))

    async def save(self, change: Change) -> Outbox | None:
        self.writes += 1
        stored = self.stored.get(change.after.id)
        if stored is None or change.before is None or stored.job.version != change.before.version:
            return None
        stored.job = change.after
        stored.outbox.extend(change.events)
        return self._outbox(stored)

    async def page(
        self, owner: str, where: JobFilter, after: Cursor | None, limit: int
    ) -> list[Job]:
        self.reads += 1
        jobs = sorted(
            (s.job for s in self.stored.values() if s.job.owner == owner and not s.job.deleted),
            key=lambda job: (job.created_at, job.id),
            reverse=True,
        )
        if where.statuses:
            jobs = [job for job in jobs if job.status in where.statuses]
        if after is not None:
            jobs = [
                job for job in jobs if (job.created_at, job.id) < (after.created_at, after.job_id)
            ]
        return jobs[:limit]

    async def overdue(self, at: datetime, limit: int) -> list[Job]:
        self.reads += 1
        return [s.job for s in self.stored.values() if s.job.overdue(at)][:limit]

    async def purgeable(self, at: datetime, policy: RetentionPolicy, limit: int) -> list[Job]:
        self.reads += 1
        return [s.job for s in self.stored.values() if s.job.due_for_purge(at, policy)][:limit]

    async def statuses(self, job_ids: Sequence[str]) -> dict[str, str]:
        self.reads += 1
        return {
            job_id: DELETED if stored.job.deleted else stored.job.status.value
            for job_id in job_ids
            if (stored := self.stored.get(job_id)) is not None
        }

    async def pending_outboxes(self, limit: int) -> list[Outbox]:
        self.reads += 1
        if self.scan_gate is not None:  # a scan of a large store: it answers when let
            await self.scan_gate.wait()
        return [self._outbox(s) for s in self.stored.values() if s.outbox][:limit]

    async def remove_delivered(self, job_id: str, delivered: Sequence[OutboxEvent]) -> None:
        self.writes += 1
        stored = self.stored[job_id]
        stored.outbox = [event for event in stored.outbox if event not in delivered]

    async def purge_deleted(self, job_id: str) -> bool:
        self.writes += 1
        stored = self.stored.get(job_id)
        if stored is None or not stored.job.deleted or stored.outbox:
            return False
        del self.stored[job_id]
        return True

    async def key_holder(self, owner: str, key: str) -> KeyHolder | None:
        self.reads += 1
        return self.keys.get((owner, key))

    async def claim_key(
        self, owner: str, key: str, job_id: str, at: datetime, claimant: str | None = None
    ) -> bool:
        self.writes += 1
        if (owner, key) in self.keys:
            return False
        self.keys[owner, key] = KeyHolder(job_id, at, claimant)
        return True

    async def release_key(self, owner: str, key: str, job_id: str) -> None:
        self.writes += 1
        holder = self.keys.get((owner, key))
        if holder is not None and holder.job_id == job_id:
            del self.keys[owner, key]

    def outbox_of(self, job_id: str) -> list[OutboxEvent]:
        return self.stored[job_id].outbox

    @staticmethod
    def _outbox(stored: _Stored) -> Outbox:
        image = stored.job.image.uri if stored.job.image else None
        return Outbox(stored.job.id, tuple(stored.outbox), stored.job.deleted, image)


class FakeBatchStore:
    def __init__(self) -> None:
        self.stored: dict[str, Batch] = {}
        self.writes = 0

    async def get(self, batch_id: str) -> Batch | None:
        return self.stored.get(batch_id)

    async def add(self, batch: Batch) -> bool:
        self.writes += 1
        return self.stored.setdefault(batch.id, batch) is batch

    async def settle(self, batch_id: str, statuses: Mapping[str, str]) -> None:
        self.writes += 1
        if batch_id in self.stored:
            self.stored[batch_id] = self.stored[batch_id].with_settled(statuses)

    async def delete(self, batch_id: str) -> None:
        self.writes += 1
        self.stored.pop(batch_id, None)


class FakeImageStore:
    """Deletes of the URIs in `unavailable` fail as a store that does not answer."""

    scheme = "mem"

    def __init__(self) -> None:
        self.images: dict[str, bytes] = {}
        self.unavailable: set[str] = set()

    def put(self, key: ImageKey, data: bytes, media_type: str) -> str:
        uri = f"mem://{key.path}"
        self.images[uri] = key.check(data)
        return uri

    def get(self, uri: str) -> bytes:
        if uri not in self.images:
            raise ImageMissing(uri)
        return self.images[uri]

    def delete(self, uri: str) -> None:
        if uri in self.unavailable:
            raise ImageStoreUnavailable(uri)
        self.images.pop(uri, None)


class FakeLeaseStore:
    def __init__(self) -> None:
        self.holder: str | None = None

    async def acquire(self, name: str, holder: str, ttl_seconds: float) -> bool:
        if self.holder in (None, holder):
            self.holder = holder
            return True
        return False

    async def release(self, name: str, holder: str) -> None:
        if self.holder == holder:
            self.holder = None


class FakePublisher:
    """Acknowledges every event but those whose id is in `fail`."""

    def __init__(self) -> None:
        self.published: list[OutboxEvent] = []
        self.fail: set[str] = set()

    async def publish(self, events: Sequence[OutboxEvent]) -> dict[str, str | None]:
        outcomes: dict[str, str | None] = {}
        for event in events:
            if event.id in self.fail:
                outcomes[event.id] = "timed out"
            else:
                self.published.append(event)
                outcomes[event.id] = None
        return outcomes

    async def close(self) -> None:
        return None


class FakeDeadLetters:
    def __init__(self) -> None:
        self.sent: list[tuple[Record, str]] = []

    async def send(self, record: Record, error: str) -> None:
        self.sent.append((record, error))

    async def close(self) -> None:
        return None


class FakeWebhookStore:
    def __init__(self) -> None:
        self.callbacks: dict[str, Callback] = {}
        self.subscribed: dict[str, Subscription] = {}
        self.secrets: dict[str, str] = {}
        self.saved: dict[str, Delivery] = {}
        self.callback_reads = 0
        self.subscription_reads = 0

    async def add_callback(self, callback: Callback) -> None:
        self.callbacks[callback.job_id] = callback

    async def callback(self, job_id: str) -> Callback | None:
        self.callback_reads += 1
        return self.callbacks.get(job_id)

    async def add_subscription(self, subscription: Subscription) -> None:
        self.subscribed[subscription.id] = subscription

    async def subscriptions(self, owner: str | None = None) -> list[Subscription]:
        self.subscription_reads += 1
        await asyncio.sleep(0)  # a read takes a turn of the event loop, as a real one does
        found = [s for s in self.subscribed.values() if owner is None or s.owner == owner]
        return sorted(found, key=lambda s: (s.created_at, s.id))

    async def remove_subscription(self, owner: str, subscription_id: str) -> bool:
        found = self.subscribed.get(subscription_id)
        if found is None or found.owner != owner:
            return False
        del self.subscribed[subscription_id]
        return True

    async def secret(self, owner: str, new: str) -> str:
        return self.secrets.setdefault(owner, new)

    async def delivery(self, delivery_id: str) -> Delivery | None:
        return self.saved.get(delivery_id)

    async def save_delivery(self, delivery: Delivery) -> None:
        self.saved[delivery.id] = delivery

    async def deliveries(self, job_id: str) -> list[Delivery]:
        found = [d for d in self.saved.values() if d.job_id == job_id]
        return sorted(found, key=lambda d: (d.updated_at, d.id))

    async def forget_job(self, job_id: str) -> None:
        self.callbacks.pop(job_id, None)
        self.saved = {key: d for key, d in self.saved.items() if d.job_id != job_id}


class FakeSender:
    """Answers from a script (the last answer repeats) and keeps every request."""

    def __init__(self, *answers: Response) -> None:
        self.answers = list(answers) or [Response(200, None)]
        self.requests: list[tuple[str, bytes, dict[str, str]]] = []

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Response:
        self.requests.append((url, body, dict(headers)))
        index = min(len(self.requests), len(self.answers)) - 1
        return self.answers[index]


@dataclass
class Wired:
    """The use cases on fakes, as runtime.py wires them on the real adapters."""

    store: FakeJobStore
    images: FakeImageStore
    publisher: FakePublisher
    dead_letters: FakeDeadLetters
    writes: OutboxWrites
    settled: SettledJobs
    service: JobService
    batch_store: FakeBatchStore
    batches: BatchService
    folding: ResultFolding
    sweeping: DeadlineSweeping
    purging: RetentionSweeping
    relaying: OutboxRelaying
    classifier: Classifier
    policy: RetryPolicy
    webhook_store: FakeWebhookStore
    webhooks: Webhooks


# Images kept a moment after their job finished (so that the sweep, not the fold, removes
# them), results an hour. `wire(retention=AT_ONCE)` is the default setting's policy.
RETENTION = RetentionPolicy(image_seconds=0.5, result_seconds=3600.0)
AT_ONCE = RetentionPolicy(image_seconds=0.0, result_seconds=3600.0)


def wire(
    *,
    max_attempts: int = 3,
    deadline_seconds: float = 60.0,
    retention: RetentionPolicy = RETENTION,
    **wait: Any,
) -> Wired:
    store, images = FakeJobStore(), FakeImageStore()
    publisher, dead_letters = FakePublisher(), FakeDeadLetters()
    writes, settled, metrics = OutboxWrites(), SettledJobs(), ServiceMetrics()
    policy = RetryPolicy(max_attempts, deadline_seconds)
    job_store: JobStore = store
    image_store: ImageStore = images
    bus: EventPublisher = publisher
    letters: DeadLetters = dead_letters
    _leases: LeaseStore = FakeLeaseStore()
    writer = JobWriter(job_store, outbox=writes, settled=settled, metrics=metrics)
    catalog = ModelCatalog.load(ROOT / "assets" / "manifest.toml", ROOT / ".cache" / "assets")
    webhook_store = FakeWebhookStore()
    hooks: WebhookStore = webhook_store
    service = JobService(
        writer, image_store, catalog, Limits(10_000_000, 40_000_000), policy, webhooks=hooks
    )
    schemas = EventSchemas(ROOT / "openapi" / "asyncapi.yaml")
    batch_store = FakeBatchStore()
    batch_port: BatchStore = batch_store
    return Wired(
        store=store,
        images=images,
        publisher=publisher,
        dead_letters=dead_letters,
        writes=writes,
        settled=settled,
        service=service,
        batch_store=batch_store,
        batches=BatchService(batch_port, service, file_problem),
        folding=ResultFolding(
            writer, schemas, policy, letters, metrics, images=image_store, retention=retention
        ),
        sweeping=DeadlineSweeping(writer, policy, metrics),
        purging=RetentionSweeping(writer, image_store, retention, metrics, batch_size=10),
        relaying=OutboxRelaying(
            job_store, image_store, bus, writes, metrics, batch_size=100, scan_interval=3600
        ),
        classifier=Classifier(
            service,
            settled,
            WaitPolicy(wait.get("timeout", 2.0), wait.get("poll", 1.0)),
        ),
        policy=policy,
        webhook_store=webhook_store,
        webhooks=Webhooks(hooks, service, TargetPolicy()),
    )


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
