"""Publishing the events waiting in job outboxes, then removing exactly those.

At-least-once: an event is removed only after Kafka acknowledged it, so a crash in between
publishes it again with the same id (consumers deduplicate by id). Per job, events go out in
outbox order on one partition (the job id is the key) through the idempotent producer.

The events come as they were written (OutboxWrites: no read); a scan of the store, once per
interval, recovers what a restart, a Kafka outage or an unanswered write left behind.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, Final

from inference_common import tracing
from inference_common.events import to_envelope, utcnow
from inference_common.image_store import ImageStore
from inference_common.tracecontext import trace_id
from inference_service.domain.events import OutboxEvent
from inference_service.metrics import ServiceMetrics
from inference_service.ports import EventPublisher, JobStore, Outbox
from inference_service.service_layer.writer import OutboxWrites

log = logging.getLogger(__name__)

_ACKNOWLEDGED: Final = 10_000


@dataclass(eq=False)
class OutboxRelaying:
    store: JobStore
    images: ImageStore
    publisher: EventPublisher
    writes: OutboxWrites
    metrics: ServiceMetrics
    _: KW_ONLY
    batch_size: int
    scan_interval: float
    _scanned_at: float = field(default=float("-inf"), init=False)
    # Recently acknowledged event ids: a job written again while its earlier events were
    # on their way hands them over once more, and they are not published twice.
    _acknowledged: OrderedDict[str, None] = field(default_factory=OrderedDict, init=False)

    async def drain_once(self) -> int:
        """Publish one batch of pending outboxes; returns how many jobs it looked at."""
        moment = time.monotonic()
        if moment - self._scanned_at < self.scan_interval:
            return await self._relay(self.writes.take(self.batch_size))
        self._scanned_at = moment
        return await self._scan_while_relaying()

    async def _scan_while_relaying(self) -> int:
        """The recovery scan, and meanwhile what is handed over: a scan of a large store
        takes seconds (the first one reads every open job), and new jobs must not wait for it.
        A job published meanwhile may be found by the scan too: its events are acknowledged
        by then, so they are only removed, not published again."""
        scan = asyncio.ensure_future(self.store.pending_outboxes(self.batch_size))
        looked_at = 0
        try:
            while not scan.done():
                taken = self.writes.take(self.batch_size)
                if taken:
                    looked_at += await self._relay(taken)
                    continue
                self.writes.wakeup.clear()
                written = asyncio.ensure_future(self.writes.wakeup.wait())
                await asyncio.wait({scan, written}, return_when=asyncio.FIRST_COMPLETED)
                written.cancel()
        finally:
            scan.cancel()  # only when this round itself was cancelled
        return looked_at + await self._relay(scan.result())

    async def _relay(self, pending: list[Outbox]) -> int:
        if not pending:
            return 0
        unpublished = [
            [event for event in outbox.events if event.id not in self._acknowledged]
            for outbox in pending
        ]
        # A span for each job with something to publish: one the scan found after its events
        # went out is only cleared.
        spans = [
            _relay_span(outbox.job_id, events)
            for outbox, events in zip(pending, unpublished, strict=True)
        ]
        outcomes = await self.publisher.publish(
            [
                _continuing(event, span)
                for events, span in zip(unpublished, spans, strict=True)
                for event in events
            ]
        )
        for outbox, span in zip(pending, spans, strict=True):
            with tracing.within(span):
                await self._settle(outbox, outcomes)
        return len(pending)

    async def _settle(self, outbox: Outbox, outcomes: dict[str, str | None]) -> None:
        """Remove the delivered prefix of the job's outbox; keep the rest, in order."""
        delivered: list[OutboxEvent] = []
        for event in outbox.events:
            if event.id in self._acknowledged:
                delivered.append(event)
                continue
            error = outcomes.get(event.id, "no acknowledgement in time")
            if error is not None:
                fields = _log_fields(outbox.job_id, event)
                log.warning("event not delivered; it stays in the outbox: %s", error, extra=fields)
                break
            delivered.append(event)
            self._published(outbox.job_id, event)
        if len(delivered) < len(outbox.events):
            self.metrics.outbox_undelivered.inc(len(outbox.events) - len(delivered))
        if delivered or not outbox.events:
            # An empty outbox still flagged (a crash between two updates) is cleared too.
            await self.store.remove_delivered(outbox.job_id, delivered)
        if outbox.deleted and len(delivered) == len(outbox.events):
            purged = await self.store.purge_deleted(outbox.job_id)
            if purged and outbox.image_uri is not None:
                await asyncio.to_thread(self.images.delete, outbox.image_uri)

    def _published(self, job_id: str, event: OutboxEvent) -> None:
        self._acknowledged[event.id] = None
        while len(self._acknowledged) > _ACKNOWLEDGED:
            self._acknowledged.popitem(last=False)
        envelope = to_envelope(event.cloudevent())
        self.metrics.outbox_published.labels(event.type.short).inc()
        self.metrics.outbox_lag.observe(max(0.0, (utcnow() - envelope.time).total_seconds()))
        log.debug("event published", extra=_log_fields(job_id, event, envelope.traceparent))


def _relay_span(job_id: str, events: list[OutboxEvent]) -> tracing.Span | None:
    """One job's part of a batch, from publishing `events` to its outbox cleared (None:
    tracing off, or nothing to publish)."""
    if not tracing.enabled() or not events:
        return None
    return tracing.open_span(
        "outbox.relay",
        parent=events[0].traceparent,
        kind=tracing.SpanKind.PRODUCER,
        attributes={"job_id": job_id},
    )


def _continuing(event: OutboxEvent, span: tracing.Span | None) -> OutboxEvent:
    """What Kafka carries: the event continuing the relay's span, when tracing."""
    traceparent = tracing.traceparent_of(span) if span is not None else None
    return event.continuing(traceparent) if traceparent else event


def _log_fields(job_id: str, event: OutboxEvent, traceparent: str | None = None) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "trace_id": trace_id(traceparent),
        "event_id": event.id,
        "event_type": event.type.value,
    }
