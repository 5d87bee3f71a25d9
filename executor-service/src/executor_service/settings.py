"""Executor settings, read from the environment on top of the shared ones."""

from __future__ import annotations

import os

from pydantic import Field, NonNegativeInt, PositiveFloat, PositiveInt

from inference_common.settings import CommonSettings


def _cores() -> int:
    # sched_getaffinity sees a container's CPU set; cpu_count() would see the host's.
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class ExecutorSettings(CommonSettings):
    """Every field reads the upper-case variable of the same name, e.g. EXECUTOR_WORKERS."""

    executor_group_id: str = "executor"
    # One interpreter per worker thread: LiteRT's invoke() and Pillow's decoder release the
    # GIL, so threads use every core (measured in docs/executor-benchmarks.md).
    executor_workers: int = Field(default_factory=_cores, ge=1)
    executor_interpreter_threads: PositiveInt = 1
    # 0 means four jobs per worker: enough queued work to keep every worker busy while the
    # poll loop fetches more, small enough that a rebalance or SIGTERM drains quickly.
    executor_max_in_flight: NonNegativeInt = 0
    executor_batch_size: int = Field(default=32, ge=1, le=10_000)
    # The result producer's linger.ms: results of jobs finishing together share a request.
    executor_linger_ms: NonNegativeInt = 2
    executor_poll_timeout_s: PositiveFloat = 0.1
    executor_max_poll_interval_ms: int = Field(default=300_000, ge=1_000)
    executor_shutdown_timeout_s: PositiveFloat = 60.0
    # How often librdkafka reports statistics, which update the consumer-lag gauge (lag.py).
    executor_lag_interval_ms: int = Field(default=5000, ge=100)

    executor_http_host: str = "127.0.0.1"
    # 0 picks a free port (tests and several executors on one host).
    executor_http_port: int = Field(default=8081, ge=0, le=65535)

    # Decompression-bomb guard: a small file may declare a huge canvas.
    executor_max_image_pixels: PositiveInt = 50_000_000
    executor_max_image_bytes: PositiveInt = 32 * 1024 * 1024
    # JPEG DCT scaling while decoding (Image.draft): ~3x faster decode for large photos.
    executor_jpeg_draft: bool = True
    # An image store that does not answer (MongoDB, S3, a network disk) is tried this many
    # times before the job fails (retryable).
    executor_image_read_attempts: PositiveInt = 3

    @property
    def max_in_flight(self) -> int:
        return self.executor_max_in_flight or 4 * self.executor_workers

    @property
    def io_threads(self) -> int:
        """Image reads run ahead of the workers: one thread per job that may be in flight."""
        return self.max_in_flight
