"""`simulator watch`: the Kafka event log, one human-readable line per event.

It reads both topics (jobs and results) by manual partition assignment under a throwaway
group id and never commits, so watching leaves no trace on the cluster and never takes
messages from a real consumer group. Lines from the two topics are held for a short window
and printed in event-time order, so a replay does not show every `created` before the first
`started`.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any, Final, Generic, Protocol, TypeVar

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)
from rich.console import Console
from rich.text import Text

from inference_common import kafka
from inference_common.events import EventType, InvalidEvent
from inference_common.kafka import consumer_config, decode
from inference_common.settings import CommonSettings
from simulator.event_lines import TYPE_NAMES, describe, warning_line

METADATA_TIMEOUT_S: Final = 5.0
REFRESH_EVERY_S: Final = 5.0
POLL_S: Final = 0.1
T = TypeVar("T")


class ConsumedMessage(kafka.ConsumedMessage, Protocol):
    """What the watcher reads of a confluent_kafka.Message: its time too."""

    def timestamp(self) -> tuple[int, int]: ...


class KafkaUnreachable(RuntimeError):
    """No broker answered at the bootstrap servers."""


@dataclass(frozen=True)
class WatchOptions:
    from_beginning: bool = False
    job_prefixes: tuple[str, ...] = ()
    types: frozenset[EventType] | None = None
    max_events: int | None = None
    idle_timeout_s: float | None = None
    full_ids: bool = False
    reorder_window_s: float = 0.5
    tz: tzinfo | None = None

    @property
    def filtered(self) -> bool:
        return bool(self.job_prefixes) or self.types is not None


def parse_types(text: str) -> frozenset[EventType]:
    """`created,completed` → the event types; ValueError naming the valid ones."""
    names = [name.strip().replace("-", "_") for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in TYPE_NAMES]
    if unknown or not names:
        named = ", ".join(unknown) or repr(text)
        raise ValueError(f"unknown event type {named}; choose from {', '.join(TYPE_NAMES)}")
    return frozenset(TYPE_NAMES[name] for name in names)


class ReorderBuffer(Generic[T]):
    """Holds each item `window_s` after it arrived, then releases items oldest event first."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._heap: list[tuple[datetime, int, float, T]] = []
        self._sequence = itertools.count()  # ties keep arrival order

    def push(self, event_time: datetime, item: T, now: float) -> None:
        heapq.heappush(self._heap, (event_time, next(self._sequence), now, item))

    def pop_ready(self, now: float) -> list[T]:
        ready = []
        while self._heap and self._heap[0][2] + self.window_s <= now:
            ready.append(heapq.heappop(self._heap)[3])
        return ready

    def drain(self) -> list[T]:
        items = [entry[3] for entry in sorted(self._heap)]
        self._heap.clear()
        return items


def render_message(message: ConsumedMessage, options: WatchOptions) -> tuple[datetime, Text] | None:
    """The line for one Kafka message, with its event time; None when filtered out."""
    try:
        envelope = decode(message)
    except InvalidEvent as exc:
        if options.filtered:
            return None  # a filter asks for certain events; a stray message is none of them
        return _warning(message, str(exc), options)
    if options.types is not None and envelope.type not in options.types:
        return None
    if options.job_prefixes and not envelope.subject.startswith(options.job_prefixes):
        return None
    try:
        line = describe(envelope)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return _warning(message, f"{envelope.type.short} with unexpected data ({exc!r})", options)
    return envelope.time, line.styled(options.tz, options.full_ids)


def _warning(message: ConsumedMessage, reason: str, options: WatchOptions) -> tuple[datetime, Text]:
    where = (
        f"a message on {message.topic()} "
        f"[partition {message.partition()}, offset {message.offset()}]"
    )
    when = message_time(message)
    return when, warning_line(when, where, reason, options.tz)


def message_time(message: ConsumedMessage) -> datetime:
    kind, millis = message.timestamp()
    if kind == 0 or millis is None or millis < 0:  # TIMESTAMP_NOT_AVAILABLE
        return datetime.now(UTC)
    return datetime.fromtimestamp(millis / 1000, UTC)


class PartitionTracker:
    """Assigns every partition of the topics, including ones that appear while we watch."""

    def __init__(self, consumer: Consumer, topics: list[str], from_beginning: bool) -> None:
        self.consumer = consumer
        self.topics = topics
        self.from_beginning = from_beginning
        self.start_ms = int(time.time() * 1000)
        self.assigned: set[tuple[str, int]] = set()
        self.missing: set[str] = set()

    def refresh(self, timeout_s: float = METADATA_TIMEOUT_S) -> list[str]:
        """Assign new partitions; return topics newly found missing, to warn about once."""
        metadata = self.consumer.list_topics(timeout=timeout_s)
        new: list[TopicPartition] = []
        missing = set()
        for topic in self.topics:
            found = metadata.topics.get(topic)
            if found is None or found.error is not None:
                missing.add(topic)
                continue
            new += [
                TopicPartition(topic, p)
                for p in sorted(found.partitions)
                if (topic, p) not in self.assigned
            ]
        newly_missing = sorted(missing - self.missing)
        self.missing = missing
        if new:
            self.consumer.incremental_assign(self._positioned(new))
            self.assigned.update((tp.topic, tp.partition) for tp in new)
        return newly_missing

    def _positioned(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        if self.from_beginning:
            return [TopicPartition(tp.topic, tp.partition, OFFSET_BEGINNING) for tp in partitions]
        # From now: the first offset at or after the moment the watch started, so events
        # produced while it was connecting are not lost (a bare `latest` would skip them).
        stamped = [TopicPartition(tp.topic, tp.partition, self.start_ms) for tp in partitions]
        found = self.consumer.offsets_for_times(stamped, timeout=METADATA_TIMEOUT_S)
        positioned = []
        for tp in found:
            offset = tp.offset
            if offset < 0:  # nothing that recent yet: start at the end
                _, offset = self.consumer.get_watermark_offsets(tp, timeout=METADATA_TIMEOUT_S)
            positioned.append(TopicPartition(tp.topic, tp.partition, offset))
        return positioned


def watch_config(
    settings: CommonSettings, on_error: Callable[[KafkaError], None]
) -> dict[str, Any]:
    quiet = logging.getLogger("simulator.watch.librdkafka")
    quiet.setLevel(logging.CRITICAL)  # errors reach the user once, through error_cb
    return consumer_config(
        settings,
        group_id=f"simulator-watch-{uuid.uuid4().hex}",
        **{
            "enable.auto.commit": False,
            "isolation.level": "read_uncommitted",  # a viewer shows everything in the log
            "error_cb": on_error,
            "logger": quiet,
        },
    )


class EventLogWatcher:
    """Polls, filters, orders and prints; `run` returns the exit code."""

    def __init__(
        self,
        settings: CommonSettings,
        options: WatchOptions,
        console: Console,
        notes: Console | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.options = options
        self.console = console
        # Notes about the connection go to stderr, so stdout stays a clean event log.
        self.notes = notes or Console(stderr=True, highlight=False)
        self.clock = clock
        self.printed = 0
        self._errors_shown: set[int] = set()
        # Until the first metadata answer, a failure is reported once, as KafkaUnreachable.
        self._connected = False
        self._buffer: ReorderBuffer[Text] = ReorderBuffer(options.reorder_window_s)

    def run(self) -> int:
        consumer = Consumer(watch_config(self.settings, self._on_error))
        try:
            tracker = PartitionTracker(
                consumer,
                [self.settings.topic_jobs, self.settings.topic_results],
                self.options.from_beginning,
            )
            try:
                missing = tracker.refresh()
            except KafkaException as exc:
                raise KafkaUnreachable(
                    f"cannot reach Kafka at {self.settings.kafka_bootstrap_servers}: "
                    f"{exc.args[0].str() if exc.args else exc}"
                ) from exc
            self._connected = True
            self._warn_missing(missing)
            try:
                self._loop(consumer, tracker)
            except KeyboardInterrupt:
                self._print(self._buffer.drain())
        finally:
            consumer.close()
        return 0

    def _loop(self, consumer: Consumer, tracker: PartitionTracker) -> None:
        last_activity = next_refresh = self.clock()
        while True:
            message = consumer.poll(POLL_S)
            now = self.clock()
            if message is not None:
                last_activity = now
                self._take(message, now)
            if self._print(self._buffer.pop_ready(now)):
                return
            if (
                self.options.idle_timeout_s is not None
                and now - last_activity >= self.options.idle_timeout_s
            ):
                self._print(self._buffer.drain())
                return
            if now >= next_refresh:
                next_refresh = now + REFRESH_EVERY_S
                # On failure error_cb has said what is wrong; keep what is assigned.
                with contextlib.suppress(KafkaException):
                    self._warn_missing(tracker.refresh(timeout_s=1.0))

    def _take(self, message: Message, now: float) -> None:
        error = message.error()
        if error is not None:
            self._on_error(error)
            return
        rendered = render_message(message, self.options)
        if rendered is not None:
            self._buffer.push(rendered[0], rendered[1], now)

    def _print(self, lines: Iterable[Text]) -> bool:
        """Print; True once --max-events lines have been printed."""
        for line in lines:
            self.console.print(line, soft_wrap=True)
            self.printed += 1
            if self.options.max_events is not None and self.printed >= self.options.max_events:
                return True
        return False

    def _warn_missing(self, topics: list[str]) -> None:
        for topic in topics:
            self._note(f"topic {topic} does not exist yet; waiting for it")

    def _on_error(self, error: KafkaError) -> None:
        # librdkafka repeats a down broker every few seconds; once per kind is enough.
        if not self._connected or error.code() in self._errors_shown:
            return
        self._errors_shown.add(error.code())
        self._note(f"Kafka: {error.str()}")

    def _note(self, text: str) -> None:
        self.notes.print(Text(f"simulator watch: {text}", style="yellow"), soft_wrap=True)
