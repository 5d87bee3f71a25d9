"""The executor's one Kafka module: its clients, and the poll loop (jobs topic in, work to
the pool, results out, offsets committed after).

The loop thread only polls, dispatches and commits; inference runs on the worker threads, so
the loop keeps the group membership alive however long a job takes. At most `max_in_flight`
executions are queued or running in the pool; consumed requests beyond that wait in a backlog
of at most one batch, and the loop fetches no more until the backlog is dispatched. (Pausing
the partitions instead purges librdkafka's prefetched messages, and the re-fetch after every
resume left the workers idle: 16 jobs/s instead of 60 in the benchmark.)
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from executor_service.batching import superseded_requests
from executor_service.execution import ExecutionContext, run_execution
from executor_service.jobs import Execution, parse_execution
from executor_service.lag import ConsumerLag
from executor_service.models import ModelRegistry
from executor_service.prefetch import ImagePrefetcher
from executor_service.settings import ExecutorSettings
from executor_service.worker import WorkerPool
from inference_common.events import Envelope, EventType, InvalidEvent, KafkaRecord
from inference_common.kafka import (
    BatchConsumer,
    Partition,
    consumer_config,
    dead_letter_copy,
    decode,
    message_position,
    producer_config,
    static_member,
)
from inference_common.offsets import OffsetTracker, Work
from inference_common.replica import ReplicaSlot

log = logging.getLogger(__name__)

# Commits are batched in time: one request per interval however many jobs finished.
_COMMIT_EVERY_S = 0.2


@dataclass(frozen=True)
class _Queued:
    """A request waiting for room in the pool."""

    work: Work
    envelope: Envelope
    execution: Execution


class ExecutorService:
    def __init__(
        self,
        settings: ExecutorSettings,
        consumer: BatchConsumer,
        producer: Producer,
        pool: WorkerPool,
        context: ExecutionContext,
        *,
        prefetcher: ImagePrefetcher | None = None,
    ) -> None:
        self._settings = settings
        self._consumer = consumer
        self._producer = producer
        self._pool = pool
        self._context = context
        self._prefetcher = prefetcher
        self._metrics = context.metrics
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._tracker = OffsetTracker(on_done=self._wake.set)
        self._done_offsets: dict[Partition, int] = {}
        # Requests consumed but not yet handed to the pool, in offset order.
        self._backlog: deque[_Queued] = deque()
        self._running = 0  # executions queued or running in the pool
        self._running_lock = threading.Lock()
        self._closing = False
        self._commit_at = 0.0
        self.fatal: str | None = None
        self.heartbeat = time.monotonic()

    # -- lifecycle ------------------------------------------------------------------------

    def stop(self) -> None:
        """Safe from a signal handler or another thread: the loop ends after this round."""
        self._stopping.set()
        self._wake.set()

    def run(self) -> int:
        """Until stop() or a fatal error; the exit code (0 when everything was delivered)."""
        self._consumer.subscribe(
            [self._settings.topic_jobs],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        try:
            while not self._stopping.is_set() and self.fatal is None:
                self._round()
        finally:
            code = self._shutdown()
        return code

    def _round(self) -> None:
        self.heartbeat = time.monotonic()
        self._producer.poll(0)  # delivery callbacks: they make work done
        if time.monotonic() - self._commit_at >= _COMMIT_EVERY_S:
            self._commit_at = time.monotonic()
            self._commit(asynchronous=True)
        self._metrics.in_flight.set(self._tracker.open)
        self._dispatch()
        if self._backlog:
            # The pool is full: wait for an execution to end rather than fetch more. Heartbeats
            # go on in librdkafka's thread; rebalances wait at most for the backlog to drain.
            self._wake.wait(self._settings.executor_poll_timeout_s)
            self._wake.clear()
            return
        self._handle(self._fetch())
        self._dispatch()

    def _fetch(self) -> list[Message]:
        try:
            return self._consumer.next_batch(
                self._settings.executor_batch_size, self._settings.executor_poll_timeout_s
            )
        except KafkaException as exc:
            self._fail(f"consumer: {exc}")
            return []

    def _dispatch(self) -> None:
        while self._backlog and self._running < self._settings.max_in_flight:
            queued = self._backlog.popleft()
            context = self._context
            if self._prefetcher is not None:
                max_bytes = context.limits.max_image_bytes
                images = self._prefetcher.prefetch(queued.envelope.data, max_bytes)
                context = replace(context, images=images)
            with self._running_lock:
                self._running += 1
            self._pool.submit(partial(self._execute, queued, context))

    def _shutdown(self) -> int:
        """Finish what is in flight, deliver, commit, leave the group."""
        self._closing = True
        # Not started: left uncommitted for whoever owns the partition next.
        self._abandon_backlog(lambda _partition: True)
        deadline = time.monotonic() + self._settings.executor_shutdown_timeout_s
        while self._tracker.open and self.fatal is None and time.monotonic() < deadline:
            self._producer.poll(0.05)
        self._producer.flush(max(0.0, deadline - time.monotonic()))
        self._commit(asynchronous=False)
        unfinished = self._tracker.open
        self._consumer.close()
        self._pool.stop(timeout=1.0 if self.fatal else None)
        if self._prefetcher is not None:
            self._prefetcher.close()
        if self.fatal or unfinished:
            log.error("stopped with work left", extra={"fatal": self.fatal, "open": unfinished})
            return 1
        log.info("stopped cleanly")
        return 0

    # -- messages -------------------------------------------------------------------------

    def _handle(self, messages: list[Message]) -> None:
        batch: list[tuple[Message, Work, Envelope | None, str]] = []
        for message in messages:
            work = self._tracker.track(*message_position(message))
            try:
                envelope = decode(message)
                problem = ""
            except InvalidEvent as exc:
                envelope, problem = None, str(exc)
            batch.append((message, work, envelope, problem))
        superseded = superseded_requests([envelope for _, _, envelope, _ in batch])
        for position, (message, work, envelope, problem) in enumerate(batch):
            if envelope is None:
                self._dead_letter(message, work, problem)
            elif envelope.type != EventType.EXECUTION_REQUESTED:
                work.finish()  # the job service's other events are not ours to act on
            elif position in superseded:
                self._skip(envelope, work)
            else:
                self._queue_request(message, work, envelope)

    def _queue_request(self, message: Message, work: Work, envelope: Envelope) -> None:
        try:
            execution = parse_execution(envelope.data, self._context.schemas)
        except ValueError as exc:
            self._dead_letter(message, work, str(exc))
            return
        self._backlog.append(_Queued(work, envelope, execution))

    def _execute(self, queued: _Queued, context: ExecutionContext, registry: ModelRegistry) -> None:
        """On a worker thread."""
        try:
            publish = partial(self._publish, queued.work, self._settings.topic_results)
            run_execution(queued.envelope, queued.execution, registry, context, publish)
        finally:
            queued.work.finish()
            with self._running_lock:
                self._running -= 1
            self._wake.set()

    def _skip(self, envelope: Envelope, work: Work) -> None:
        log.info(
            "execution skipped: job cancelled later in the batch",
            extra={"job_id": envelope.subject},
        )
        self._metrics.jobs.labels("skipped").inc()
        work.finish()

    def _dead_letter(self, message: Message, work: Work, problem: str) -> None:
        key, value, headers = dead_letter_copy(message, problem)
        self._produce(work, self._settings.topic_dead_letter, key, value, headers)
        self._metrics.dead_letters.inc()
        work.finish()

    # -- producing ------------------------------------------------------------------------

    def _publish(self, work: Work, topic: str, record: KafkaRecord) -> None:
        self._produce(work, topic, record.key, record.value, record.headers)

    def _produce(
        self,
        work: Work,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes | None]],
    ) -> None:
        """Queue a record; `work` stays open until Kafka has acknowledged it."""
        work.expect_record()
        header_list: list[tuple[str, str | bytes | None]] = list(headers)

        def delivered(error: KafkaError | None, _message: Message) -> None:
            if error is not None:
                self._fail(f"delivery to {topic} failed: {error}")
            work.record_delivered(error is None)

        while True:
            try:
                self._producer.produce(
                    topic, value=value, key=key, headers=header_list, on_delivery=delivered
                )
                return
            except BufferError:  # the local queue is full: let deliveries drain first
                self._producer.poll(0.05)
            except KafkaException as exc:
                self._fail(f"cannot produce to {topic}: {exc}")
                work.record_delivered(False)
                return

    def _fail(self, reason: str) -> None:
        # Nothing past an undelivered result may be committed: stop, and let the group redo.
        log.error("fatal: %s", reason)
        self.fatal = self.fatal or reason
        self._wake.set()

    # -- offsets and the group ------------------------------------------------------------

    def _commit(self, asynchronous: bool, partitions: Iterable[Partition] | None = None) -> None:
        self._done_offsets.update(self._tracker.committable(partitions))
        wanted = (
            self._done_offsets
            if partitions is None
            else {p: self._done_offsets[p] for p in partitions if p in self._done_offsets}
        )
        self._consumer.commit(wanted, asynchronous=asynchronous)

    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("partitions assigned", extra={"partitions": _names(partitions)})

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Finish and commit the revoked partitions' work, so the next owner redoes nothing."""
        keys = [(tp.topic, tp.partition) for tp in partitions]
        self._abandon_backlog(lambda partition: partition in keys)
        if not self._closing:
            deadline = time.monotonic() + self._settings.executor_shutdown_timeout_s
            while (
                self._tracker.open_in(keys) and self.fatal is None and time.monotonic() < deadline
            ):
                self._producer.poll(0.05)
        self._commit(asynchronous=False, partitions=keys)
        self._release(keys)
        log.info("partitions revoked", extra={"partitions": _names(partitions)})

    def _on_lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Another member owns them already; committing now would fail or overwrite its work.
        keys = [(tp.topic, tp.partition) for tp in partitions]
        self._abandon_backlog(lambda partition: partition in keys)
        self._release(keys)
        log.warning("partitions lost", extra={"partitions": _names(partitions)})

    def _release(self, keys: list[Partition]) -> None:
        self._tracker.forget(keys)
        self._consumer.forget(keys)
        for key in keys:
            self._done_offsets.pop(key, None)
            # Its lag is the new owner's to report (lag.py); none may have been reported yet.
            with contextlib.suppress(KeyError):
                self._metrics.consumer_lag.remove(key[0], str(key[1]))

    def _abandon_backlog(self, revoked: Callable[[Partition], bool]) -> None:
        kept: deque[_Queued] = deque()
        for queued in self._backlog:
            if revoked(queued.work.partition):
                self._tracker.abandon(queued.work)
            else:
                kept.append(queued)
        self._backlog = kept


def _names(partitions: list[TopicPartition]) -> list[str]:
    return [f"{tp.topic}[{tp.partition}]" for tp in partitions]


def kafka_clients(
    settings: ExecutorSettings, client_id: str, replica: ReplicaSlot, lag: ConsumerLag
) -> tuple[BatchConsumer, Producer]:
    """The group member reading the jobs topic (static, named after the replica; its lag
    from librdkafka's statistics) and the producer of results and dead letters."""
    consumer = Consumer(
        consumer_config(
            settings,
            settings.executor_group_id,
            **static_member(settings, replica, settings.topic_jobs),
            **{
                "client.id": client_id,
                "max.poll.interval.ms": settings.executor_max_poll_interval_ms,
                "statistics.interval.ms": settings.executor_lag_interval_ms,
                "stats_cb": lag.on_statistics,
            },
        )
    )
    return BatchConsumer(consumer), Producer(
        producer_config(
            settings, **{"client.id": client_id, "linger.ms": settings.executor_linger_ms}
        )
    )


def kafka_reachable(client: Any, topic: str, timeout: float = 2.0) -> bool:
    """A metadata round trip: what readiness means for the Kafka side."""
    try:
        metadata = client.list_topics(topic=topic, timeout=timeout)
    except KafkaException:
        return False
    return topic in metadata.topics and not metadata.topics[topic].error
