"""SettledJobs: wakes in-process waiters when the result folder changes one of their jobs.

Only a hint: the waiter re-reads the job from MongoDB, and polls on its own too (a job may be
folded by another replica, or failed by the deadline sweeper).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator


class SettledJobs:
    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Event]] = {}

    def notify(self, job_id: str) -> None:
        for event in self._waiters.get(job_id, ()):
            event.set()

    @contextlib.contextmanager
    def watch(self, job_id: str) -> Iterator[asyncio.Event]:
        """An event set whenever the job changes while the block runs."""
        event = asyncio.Event()
        self._waiters.setdefault(job_id, set()).add(event)
        try:
            yield event
        finally:
            waiters = self._waiters.get(job_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiters[job_id]
