"""OutboxRelay without Kafka or MongoDB: what it removes after which acknowledgements."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import KafkaError

from inference_service.domain import events
from inference_service.domain.events import Channel
from inference_service.workers.relay import OutboxRelay, OutboxWrites, RelayConfig

JOB = "0123456789abcdef0123456789abcdef"
AT = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class FakeProducer:
    """Acknowledges every event except the ids in `fail`, on the next poll."""

    def __init__(self, fail: set[str]) -> None:
        self.fail = fail
        self.produced: list[tuple[str, bytes]] = []
        self._callbacks: list[tuple[Callable[..., None], bool]] = []

    def produce(
        self, topic: str, *, key: bytes, value: bytes, headers: Any, on_delivery: Any
    ) -> None:
        event_id = dict(headers)["ce_id"].decode()
        self.produced.append((topic, key))
        self._callbacks.append((on_delivery, event_id in self.fail))

    def poll(self, _timeout: float) -> int:
        callbacks, self._callbacks = self._callbacks, []
        for callback, failed in callbacks:
            callback(KafkaError(KafkaError._MSG_TIMED_OUT) if failed else None, None)
        return len(callbacks)

    def flush(self, _timeout: float) -> int:
        return self.poll(0)


class FakeJobs:
    def __init__(self, jobs: list[dict[str, Any]]) -> None:
        self.jobs = {job["_id"]: job for job in jobs}
        self.purged: list[str] = []

    async def pending_outbox(self, job_id: str) -> dict[str, Any] | None:
        job = self.jobs.get(job_id)
        return job if job is not None and job["outbox_pending"] else None

    async def pending_outboxes(self, limit: int) -> list[dict[str, Any]]:
        return [job for job in self.jobs.values() if job["outbox_pending"]][:limit]

    async def remove_delivered(self, job_id: str, delivered: list[dict[str, Any]]) -> None:
        job = self.jobs[job_id]
        job["outbox"] = [entry for entry in job["outbox"] if entry not in delivered]
        job["outbox_pending"] = bool(job["outbox"])

    async def purge_deleted(self, job_id: str) -> dict[str, Any] | None:
        self.purged.append(job_id)
        return self.jobs.pop(job_id)


class FakeImages:
    def __init__(self) -> None:
        self.deleted: list[str] = []

    async def delete(self, file_id: str) -> None:
        self.deleted.append(file_id)


def relay_with(
    jobs: FakeJobs, producer: FakeProducer, images: FakeImages | None = None
) -> OutboxRelay:
    config = RelayConfig(
        topics={Channel.JOBS: "jobs", Channel.RESULTS: "results"}, producer={}, delivery_timeout=1
    )
    relay = OutboxRelay(
        jobs,  # type: ignore[arg-type]
        images or FakeImages(),  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        config,
        OutboxWrites(),
        producer_factory=lambda _config: producer,  # type: ignore[arg-type,return-value]
    )
    relay._producer = producer  # type: ignore[assignment]
    return relay


def outbox(*built: events.OutboxEvent) -> list[dict[str, Any]]:
    return [event.to_document() for event in built]


def test_delivered_events_are_removed_and_the_flag_cleared() -> None:
    cancelled = events.cancelled(JOB, "r", AT, TRACE)
    failed = events.deadline_failed(JOB, "e" * 32, 1, AT, TRACE)
    jobs = FakeJobs([{"_id": JOB, "outbox": outbox(cancelled, failed), "outbox_pending": True}])
    producer = FakeProducer(fail=set())
    assert asyncio.run(relay_with(jobs, producer).drain_once()) == 1
    assert jobs.jobs[JOB]["outbox"] == [] and not jobs.jobs[JOB]["outbox_pending"]
    # Keyed by the job, to the topic of each event's channel, in outbox order.
    assert producer.produced == [("jobs", JOB.encode()), ("results", JOB.encode())]


def test_only_the_delivered_prefix_goes_so_order_survives_a_retry() -> None:
    first = events.cancelled(JOB, "r", AT, TRACE)
    second = events.deleted(JOB, AT, TRACE)
    jobs = FakeJobs([{"_id": JOB, "outbox": outbox(first, second), "outbox_pending": True}])
    asyncio.run(relay_with(jobs, FakeProducer(fail={first.id})).drain_once())
    # The second was acknowledged, but removing it would publish it before the first later.
    assert [entry["id"] for entry in jobs.jobs[JOB]["outbox"]] == [first.id, second.id]
    assert jobs.jobs[JOB]["outbox_pending"]


def test_a_deleted_job_is_purged_with_its_image_once_its_events_are_out() -> None:
    gone = events.deleted(JOB, AT, TRACE)
    image = {"file_id": "0123456789abcdef01234567"}
    job = {
        "_id": JOB,
        "outbox": outbox(gone),
        "outbox_pending": True,
        "deleted": True,
        "image": image,
    }
    jobs, images = FakeJobs([job]), FakeImages()
    asyncio.run(relay_with(jobs, FakeProducer(fail=set()), images).drain_once())
    assert jobs.purged == [JOB] and images.deleted == [image["file_id"]]


def test_a_deleted_job_whose_events_failed_stays() -> None:
    gone = events.deleted(JOB, AT, TRACE)
    job = {"_id": JOB, "outbox": outbox(gone), "outbox_pending": True, "deleted": True}
    jobs = FakeJobs([job])
    asyncio.run(relay_with(jobs, FakeProducer(fail={gone.id})).drain_once())
    assert jobs.purged == [] and jobs.jobs[JOB]["outbox_pending"]


def test_metrics_count_what_went_out_and_what_stayed() -> None:
    first = events.cancelled(JOB, "r", AT, TRACE)
    second = events.deleted(JOB, AT, TRACE)
    other = "f" * 32
    published = events.cancelled(other, "r", AT, TRACE)
    jobs = FakeJobs(
        [
            {"_id": JOB, "outbox": outbox(first, second), "outbox_pending": True},
            {"_id": other, "outbox": outbox(published), "outbox_pending": True},
        ]
    )
    relay = relay_with(jobs, FakeProducer(fail={first.id}))
    asyncio.run(relay.drain_once())
    sample = relay.metrics.registry.get_sample_value
    assert sample("inference_outbox_events_published_total", {"type": "job.cancelled.v1"}) == 1
    assert sample("inference_outbox_events_published_total", {"type": "job.deleted.v1"}) is None
    assert sample("inference_outbox_delivery_failures_total") == 2  # the first, and one behind it
    # Lag runs from the event's own time (AT, long past) to the acknowledgement.
    assert sample("inference_outbox_lag_seconds_count") == 1
    assert sample("inference_outbox_lag_seconds_bucket", {"le": "60.0"}) == 0


class TakenLease:
    """Another replica holds the relay lease, for as long as the test lasts."""

    def __init__(self) -> None:
        self.attempts = 0

    async def acquire(self, _name: str, _holder: str, _ttl: float) -> bool:
        self.attempts += 1
        return False

    async def release(self, _name: str, _holder: str) -> None:
        pass


def test_a_replica_without_the_lease_neither_keeps_its_writes_nor_retries_per_write() -> None:
    """Its writes reach Kafka through the holder's scan: keeping their ids would grow without
    bound, and trying for the lease at every write would cost a database write each."""
    writes, lease = OutboxWrites(), TakenLease()
    producer = FakeProducer(set())
    config = RelayConfig(topics={Channel.JOBS: "jobs"}, producer={}, poll_interval=30)
    relay = OutboxRelay(
        FakeJobs([]),  # type: ignore[arg-type]
        FakeImages(),  # type: ignore[arg-type]
        lease,  # type: ignore[arg-type]
        config,
        writes,
        producer_factory=lambda _config: producer,  # type: ignore[arg-type,return-value]
    )

    async def scenario() -> None:
        for n in range(200):
            writes(f"early-{n}")
        stop = asyncio.Event()
        running = asyncio.create_task(relay.run(stop))
        while lease.attempts == 0:
            await asyncio.sleep(0)
        assert len(writes) == 0  # a round without the lease forgets them
        for n in range(200):
            writes(f"later-{n}")
            await asyncio.sleep(0)
        assert lease.attempts == 1  # the writes did not wake it
        stop.set()
        await running

    asyncio.run(scenario())
    assert producer.produced == []
