"""The job service's background loops: thin, each around one use case.

A loop that crashes is restarted by the composition root (runtime.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import KW_ONLY, dataclass, field
from typing import Final

from inference_common.offsets import OffsetTracker, Work
from inference_service.ports import (
    BusError,
    GroupRecords,
    LeaseStore,
    Record,
    RecordSource,
    StoreError,
)
from inference_service.service_layer.folding import ResultFolding, positions, unanswered_starts
from inference_service.service_layer.live import LiveEvents
from inference_service.service_layer.relaying import OutboxRelaying
from inference_service.service_layer.retention import RetentionSweeping
from inference_service.service_layer.sweeping import DeadlineSweeping
from inference_service.service_layer.webhooks import WebhookDispatching
from inference_service.service_layer.writer import OutboxWrites

log = logging.getLogger(__name__)

LEASE_NAME: Final = "outbox-relay"
Sweeping = DeadlineSweeping | RetentionSweeping
# Starts reading (raises BusError while Kafka cannot be reached).
LiveStart = Callable[[], Awaitable[None]]


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


async def wait_any(stop: asyncio.Event, wakeup: asyncio.Event, timeout: float) -> None:
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wakeup.wait())]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


def _process_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(eq=False)
class RelayLoop:
    """One relay at a time publishes (a lease), so replicas never race each other."""

    relaying: OutboxRelaying
    leases: LeaseStore
    _: KW_ONLY
    poll_interval: float
    lease_seconds: float
    # The replica's name (stable across its restarts) renews the lease its crash left.
    holder: str = field(default_factory=_process_name)
    _renewed_at: float = field(default=float("-inf"), init=False)

    @property
    def writes(self) -> OutboxWrites:
        return self.relaying.writes

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                # Clear before draining: a write during the drain wakes the next round at once.
                self.writes.wakeup.clear()
                full = False
                try:
                    holder = await self._hold_lease()
                    if holder:
                        full = await self.relaying.drain_once() >= self.relaying.batch_size
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("outbox relay round failed; retrying")
                    await sleep_or_stop(stop, self.poll_interval)
                    continue
                if not holder:
                    # Another replica publishes, and its scan finds this one's writes: keeping
                    # them would grow without bound, and waking at each one would try for the
                    # lease (a database write) once per write.
                    self.writes.clear()
                    await sleep_or_stop(stop, self.poll_interval)
                elif not full:
                    await wait_any(stop, self.writes.wakeup, self.poll_interval)
        finally:
            with contextlib.suppress(Exception):
                await self.leases.release(LEASE_NAME, self.holder)
            await self.relaying.publisher.close()

    async def _hold_lease(self) -> bool:
        """Renewed a third into its term, not at every round: a database write saved."""
        if time.monotonic() - self._renewed_at < self.lease_seconds / 3:
            return True
        started = time.monotonic()
        if await self.leases.acquire(LEASE_NAME, self.holder, self.lease_seconds):
            self._renewed_at = started
            return True
        self._renewed_at = float("-inf")
        return False


@dataclass(eq=False)
class FolderLoop:
    """Results in batches; offsets committed only once folded. A lone `started` is held for
    up to `linger` seconds for its job's outcome: one write for both."""

    folding: ResultFolding
    results: GroupRecords
    _: KW_ONLY
    batch_size: int
    linger: float
    poll_timeout: float = 0.5
    retry_backoff: float = 1.0

    async def run(self, stop: asyncio.Event) -> None:
        held: list[Record] = []
        held_until = 0.0
        try:
            while not stop.is_set():
                wait = max(0.0, held_until - time.monotonic()) if held else self.poll_timeout
                records = held + await self.results.next_batch(self.batch_size, wait)
                if not records:
                    continue
                expired = bool(held) and time.monotonic() >= held_until
                holding = [] if expired or not self.linger else unanswered_starts(records)
                waiting = {id(record) for record in holding}
                try:
                    await self.folding.fold([r for r in records if id(r) not in waiting])
                except (StoreError, BusError) as exc:
                    log.warning("cannot fold %s now (%s); will retry", records[0].where, exc)
                    await self.results.rewind(records)
                    held = []
                    await sleep_or_stop(stop, self.retry_backoff)
                    continue
                await self.results.commit(positions(records, holding))
                if holding and not held:
                    held_until = time.monotonic() + self.linger
                held = holding
        finally:
            await self.results.close()
            await self.folding.dead_letters.close()


@dataclass(eq=False)
class WebhookLoop:
    """Job events from both topics (its own group), each delivered on its own task: a target
    that fails or hangs holds up only its own deliveries, while the loop reads on. Offsets
    are committed per partition up to the first event not yet settled (every delivery
    delivered or dead), so a restart repeats only what was still under way."""

    dispatching: WebhookDispatching
    events: GroupRecords
    _: KW_ONLY
    max_in_flight: int
    batch_size: int = 100
    poll_timeout: float = 0.5
    retry_backoff: float = 1.0
    # Every event under way retries on its own through an outage: one warning in ten seconds.
    _warned_at: float = field(default=float("-inf"), init=False)

    async def run(self, stop: asyncio.Event) -> None:
        offsets = OffsetTracker()
        tasks: set[asyncio.Task[None]] = set()
        crashed: list[BaseException] = []

        def ended(task: asyncio.Task[None]) -> None:
            tasks.discard(task)
            if not task.cancelled() and task.exception() is not None:
                crashed.append(task.exception() or RuntimeError())

        try:
            while not stop.is_set():
                room = self.max_in_flight - offsets.open
                if room <= 0 and tasks:  # as many events under way as allowed: wait for one
                    await asyncio.wait(
                        tasks, timeout=self.poll_timeout, return_when=asyncio.FIRST_COMPLETED
                    )
                elif room > 0:
                    for record in await self.events.next_batch(
                        min(room, self.batch_size), self.poll_timeout
                    ):
                        work = offsets.track(record.topic, record.partition, record.offset)
                        task = asyncio.create_task(self._settle(record, work, stop))
                        tasks.add(task)
                        task.add_done_callback(ended)
                if crashed:
                    # A bug, not an outage: end the loop, which the runtime restarts; the
                    # event is consumed again, not skipped.
                    raise RuntimeError("a webhook delivery failed unexpectedly") from crashed[0]
                await self.events.commit(offsets.committable())
        finally:
            # Stopping: deliveries waiting for their next attempt end at once, unsettled. Ended
            # by a failure (Kafka, a bug): the loop restarts at once and reads them again.
            if not stop.is_set():
                for task in tasks:
                    task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(BusError):
                await self.events.commit(offsets.committable())
            await self.events.close()
            await self.dispatching.dead_letters.close()

    async def _settle(self, record: Record, work: Work, stop: asyncio.Event) -> None:
        """Deliver what the event owes; its offset may be committed once that is settled."""
        while not stop.is_set():
            try:
                if await self.dispatching.handle(record, stop):
                    work.finish()
                return  # not settled: stopping, so it is consumed again after a restart
            except (StoreError, BusError) as exc:
                if time.monotonic() - self._warned_at >= 10.0:
                    self._warned_at = time.monotonic()
                    log.warning(
                        "cannot dispatch webhooks for %s now (%s); will retry", record.where, exc
                    )
                await sleep_or_stop(stop, self.retry_backoff)


class SweeperLoop:
    """One sweep (the deadlines', retention's), then a pause of `interval`, until stopped: a
    sweep handles a bounded batch, so the database sees at most one batch per interval."""

    def __init__(self, sweeping: Sweeping, interval: float, name: str = "deadline sweep") -> None:
        self.sweeping = sweeping
        self.interval = interval
        self.name = name

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.sweeping.sweep_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s failed; retrying", self.name)
            await sleep_or_stop(stop, self.interval)


class LiveLoop:
    """Feeds every event of both topics, from their end at start, to the SSE subscribers."""

    def __init__(self, live: LiveEvents, tail: RecordSource, start: LiveStart) -> None:
        self.live = live
        self.tail = tail
        self.start = start

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set() and not self.live.ready.is_set():
                try:
                    await self.start()
                    self.live.ready.set()
                except BusError as exc:
                    log.warning("live events cannot reach Kafka yet: %s", exc)
                    await sleep_or_stop(stop, 2.0)
            while not stop.is_set():
                # Each message as it comes: a batch waits, and mixes the two topics' order.
                for record in await self.tail.next_batch(500, 0.5):
                    try:
                        await self.live.dispatch(record)
                    except Exception:
                        # One event lost to its subscribers, not every event until a restart
                        # has read the topics again from their end.
                        log.exception("live events: cannot dispatch %s", record.where)
        finally:
            self.live.ready.clear()  # a restart reads from the end again: streams reopen
            self.live.close_all()
            await self.tail.close()
