"""The outbox relay on fakes: it publishes what was handed to it, removes what Kafka took."""

from __future__ import annotations

import asyncio

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from inference_common.events import EventType
from inference_common.tracecontext import Span
from tests.unit.service.builders import new_job
from tests.unit.service.fakes import wire


def test_handed_events_are_published_without_a_read_and_then_removed() -> None:
    wired = wire()
    asyncio.run(wired.relaying.drain_once())  # the start-up recovery scan: nothing yet
    job, _ = asyncio.run(wired.service.create(new_job()))
    reads = wired.store.reads
    assert asyncio.run(wired.relaying.drain_once()) == 1
    assert wired.store.reads == reads
    assert [e.type for e in wired.publisher.published] == [
        EventType.CREATED,
        EventType.EXECUTION_REQUESTED,
    ]
    assert wired.store.outbox_of(job.id) == []


def test_an_undelivered_event_stays_with_those_after_it_and_the_scan_finds_them() -> None:
    wired = wire()
    job, _ = asyncio.run(wired.service.create(new_job()))
    created, requested = wired.store.outbox_of(job.id)
    wired.publisher.fail = {requested.id}
    asyncio.run(wired.relaying.drain_once())
    assert wired.store.outbox_of(job.id) == [requested]
    wired.publisher.fail = set()
    wired.relaying.scan_interval = 0  # the recovery scan, as after its interval
    asyncio.run(wired.relaying.drain_once())
    assert wired.store.outbox_of(job.id) == []
    assert [e.id for e in wired.publisher.published] == [created.id, requested.id]


def test_a_deleted_job_is_purged_with_its_image_once_its_events_are_out() -> None:
    wired = wire()
    asyncio.run(wired.relaying.drain_once())
    job, _ = asyncio.run(wired.service.create(new_job(execute=False)))
    asyncio.run(wired.service.delete("alice", job.id, Span()))
    asyncio.run(wired.relaying.drain_once())
    assert job.id not in wired.store.stored and wired.images.images == {}
    assert [e.type for e in wired.publisher.published] == [EventType.CREATED, EventType.DELETED]


def test_new_jobs_are_published_while_the_recovery_scan_is_still_reading() -> None:
    # The first scan reads every open job: seconds on a large store. Issue 11's stalls after
    # a start were jobs waiting for it.
    wired = wire()
    scanned = wired.store.scan_gate = asyncio.Event()

    async def scenario() -> None:
        drain = asyncio.ensure_future(wired.relaying.drain_once())
        job, _ = await wired.service.create(new_job())
        for _ in range(100):  # turns of the event loop, not time
            if wired.store.outbox_of(job.id) == []:
                break
            await asyncio.sleep(0)
        assert not drain.done(), "the scan is still reading"
        assert [e.type for e in wired.publisher.published] == [
            EventType.CREATED,
            EventType.EXECUTION_REQUESTED,
        ]
        assert wired.store.outbox_of(job.id) == []
        scanned.set()
        assert await drain == 1

    asyncio.run(scenario())


def test_events_handed_over_again_after_they_went_out_are_not_published_or_traced_again(
    spans: InMemorySpanExporter,
) -> None:
    # The recovery scan may find a job whose events the relay is publishing meanwhile.
    wired = wire()
    asyncio.run(wired.relaying.drain_once())
    asyncio.run(wired.service.create(new_job()))
    [outbox] = wired.writes.take(1)
    for _ in range(2):
        wired.writes(outbox)
        asyncio.run(wired.relaying.drain_once())
    assert len(wired.publisher.published) == 2  # created, execution_requested: once each
    assert [s.name for s in spans.get_finished_spans()].count("outbox.relay") == 1
