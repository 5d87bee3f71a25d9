"""Worker threads, each with interpreters of its own, fed from one queue.

Threads rather than processes: LiteRT's invoke() and Pillow's decoders release the GIL, so
two workers on two cores run 1.8x the invokes of one (docs/executor-benchmarks.md), and the
images and results need no pickling between processes.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

from executor_service.models import ModelRegistry

log = logging.getLogger(__name__)

Task = Callable[[ModelRegistry], None]


class WorkerPool:
    def __init__(self, workers: int, load_registry: Callable[[], ModelRegistry]) -> None:
        self._workers = workers
        self._load_registry = load_registry
        self._tasks: queue.SimpleQueue[Task | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._ready = 0
        self._ready_lock = threading.Condition()
        self.error: BaseException | None = None

    def start(self) -> None:
        for n in range(self._workers):
            thread = threading.Thread(target=self._serve, name=f"executor-worker-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def wait_ready(self, timeout: float | None = None) -> bool:
        """True once every worker has loaded and warmed its models."""
        with self._ready_lock:
            self._ready_lock.wait_for(
                lambda: self._ready == self._workers or self.error is not None, timeout
            )
            return self.ready

    @property
    def ready(self) -> bool:
        return self._ready == self._workers and self.error is None

    def submit(self, task: Task) -> None:
        self._tasks.put(task)

    def stop(self, timeout: float | None = None) -> None:
        """Run what is queued, then end every thread."""
        for _ in self._threads:
            self._tasks.put(None)
        for thread in self._threads:
            thread.join(timeout)

    def _serve(self) -> None:
        try:
            registry = self._load_registry()
        except BaseException as exc:
            log.exception("a worker could not load its models")
            with self._ready_lock:
                self.error = exc
                self._ready_lock.notify_all()
            return
        with self._ready_lock:
            self._ready += 1
            self._ready_lock.notify_all()
        while (task := self._tasks.get()) is not None:
            try:
                task(registry)
            except Exception:  # a task reports its own failures; this is a bug, keep serving
                log.exception("unexpected error in a worker task")
