"""SettledJobs: hands a job that just finished to the requests waiting for it in this process.

Only a shortcut: a waiter also polls the store (a job may be finished by another replica).
A job finished shortly before its waiter started watching is remembered for a while, so the
waiter need not read the store to learn it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import Iterator
from typing import Final

from inference_service.domain.job import Job

_REMEMBERED: Final = 1000


class Watch:
    def __init__(self) -> None:
        self.changed = asyncio.Event()
        self.job: Job | None = None

    def tell(self, job: Job) -> None:
        self.job = job
        self.changed.set()


class SettledJobs:
    def __init__(self) -> None:
        self._watches: dict[str, set[Watch]] = {}
        self._recent: OrderedDict[str, Job] = OrderedDict()

    def notify(self, job: Job) -> None:
        self._recent[job.id] = job
        while len(self._recent) > _REMEMBERED:
            self._recent.popitem(last=False)
        for watch in self._watches.get(job.id, ()):
            watch.tell(job)

    @contextlib.contextmanager
    def watch(self, job_id: str) -> Iterator[Watch]:
        """Told whenever the job settles while the block runs (or had just settled)."""
        watch = Watch()
        recent = self._recent.get(job_id)
        if recent is not None:
            watch.tell(recent)
        self._watches.setdefault(job_id, set()).add(watch)
        try:
            yield watch
        finally:
            watches = self._watches.get(job_id)
            if watches is not None:
                watches.discard(watch)
                if not watches:
                    del self._watches[job_id]
