"""Which offsets may be committed: at-least-once with work finishing out of order.

A message is done when its handling has finished and every record it produced has been
delivered. Per partition, only the prefix of done messages is committable, so a crash never
skips a message whose results are not yet in Kafka.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable

from inference_common.kafka import Partition


class Work:
    """One consumed message. Touched by the poll loop, a worker and delivery callbacks."""

    def __init__(self, partition: Partition, offset: int, on_done: Callable[[Work], None]) -> None:
        self.partition = partition
        self.offset = offset
        self._on_done = on_done
        self._lock = threading.Lock()
        self._outstanding = 1  # the handling itself; each produced record adds one
        self._failed = False
        self._abandoned = False

    def abandon(self) -> None:
        with self._lock:
            self._abandoned = True

    def expect_record(self) -> None:
        with self._lock:
            self._outstanding += 1

    def record_delivered(self, ok: bool) -> None:
        with self._lock:
            self._failed |= not ok
        self._release()

    def finish(self) -> None:
        self._release()

    def _release(self) -> None:
        with self._lock:
            self._outstanding -= 1
            now_done = self._outstanding == 0
        if now_done:
            self._on_done(self)

    @property
    def done(self) -> bool:
        """Done and delivered; a failed delivery is never done, so never committed."""
        with self._lock:
            return self._outstanding == 0 and not self._failed and not self._abandoned


class OffsetTracker:
    def __init__(self, on_done: Callable[[], None] = lambda: None) -> None:
        self._works: dict[Partition, deque[Work]] = {}
        self._lock = threading.Lock()
        self._open: set[Work] = set()
        self._on_done = on_done

    def track(self, topic: str, partition: int, offset: int) -> Work:
        """Called by the poll loop, in offset order per partition."""
        work = Work((topic, partition), offset, self._done)
        with self._lock:
            self._open.add(work)
        self._works.setdefault((topic, partition), deque()).append(work)
        return work

    def _done(self, work: Work) -> None:
        with self._lock:
            self._open.discard(work)
        self._on_done()

    @property
    def open(self) -> int:
        """Messages consumed and not yet done: the in-flight count for back-pressure."""
        with self._lock:
            return len(self._open)

    def open_in(self, partitions: Iterable[Partition]) -> int:
        wanted = set(partitions)
        with self._lock:
            return sum(1 for work in self._open if work.partition in wanted)

    def committable(self, partitions: Iterable[Partition] | None = None) -> dict[Partition, int]:
        """Next offset to commit per partition (last done + 1), for the done prefix only."""
        wanted = self._works.keys() if partitions is None else partitions
        offsets: dict[Partition, int] = {}
        for partition in list(wanted):
            queue = self._works.get(partition)
            while queue and queue[0].done:
                offsets[partition] = queue.popleft().offset + 1
        return offsets

    def abandon(self, work: Work) -> None:
        """Work that will not be done here (never started): no longer open, never committed."""
        with self._lock:
            self._open.discard(work)
        work.abandon()

    def forget(self, partitions: Iterable[Partition]) -> None:
        """A revoked or lost partition: its unfinished work is the new owner's to redo."""
        for partition in partitions:
            forgotten = self._works.pop(partition, deque())
            with self._lock:
                self._open.difference_update(forgotten)
