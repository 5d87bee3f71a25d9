"""Prometheus metrics of one executor, in a registry of its own (tests run several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from inference_common.metrics import MetricSet

# Invoke times range from 0.03 ms (MNIST LSTM) to ~15 ms (SSD at one thread).
_INFERENCE_BUCKETS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
_JOB_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics(MetricSet):
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__(registry)
        self.inference_seconds = self.histogram(
            "executor_inference_seconds",
            "Time in the interpreter's invoke(), per model.",
            ["model"],
            buckets=_INFERENCE_BUCKETS,
        )
        self.job_seconds = self.histogram(
            "executor_job_seconds",
            "Time from the start of an execution to its outcome (fetch, decode, invoke).",
            ["model"],
            buckets=_JOB_BUCKETS,
        )
        self.jobs = self.counter(
            "executor_jobs",
            "Executions by outcome: completed, failed, or skipped (cancelled in the same batch).",
            ["outcome"],
        )
        self.failures = self.counter(
            "executor_job_failures", "Failed executions by error code.", ["code"]
        )
        self.dead_letters = self.counter(
            "executor_dead_letters", "Messages set aside on the dead-letter topic."
        )
        self.consumer_lag = self.gauge(
            "inference_executor_consumer_lag",
            "Messages in each assigned partition past the group's committed offset (lag.py).",
            ["topic", "partition"],
        )
        self.in_flight = self.gauge(
            "executor_in_flight_messages",
            "Messages consumed and not yet done (handled and their results delivered).",
        )
