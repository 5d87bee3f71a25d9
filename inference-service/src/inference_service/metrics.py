"""Prometheus metrics of one job service, in a registry of its own (tests run several).

Served at `/metrics` beside `/healthz`, outside the API's base path and its API keys.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import CollectorRegistry

from inference_common.metrics import MetricSet

# Reads answer in milliseconds, an upload with its image check in tens; classify waits seconds.
_HTTP_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# From a state change to Kafka's acknowledgement: milliseconds, unless Kafka was away.
_LAG_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class ServiceMetrics(MetricSet):
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__(registry)
        self.http_seconds = self.histogram(
            "inference_http_request_duration_seconds",
            "Time from a request to its response headers (for an event stream: until it "
            "opened), by method, route template and status; its _count counts requests.",
            ["method", "route", "status"],
            buckets=_HTTP_BUCKETS,
        )
        self.jobs_created = self.counter(
            "inference_jobs_created",
            "Jobs created (an idempotent retry creates none), by model.",
            ["model"],
        )
        self.job_transitions = self.counter(
            "inference_job_transitions",
            "Jobs entering a status, by status (a job created with execute=true enters QUEUED).",
            ["status"],
        )
        self.deadlines_missed = self.counter(
            "inference_deadlines_missed",
            "Executions past their deadline, by what the sweeper did: retried or failed.",
            ["action"],
        )
        self.outbox_published = self.counter(
            "inference_outbox_events_published",
            "Events the outbox relay published (acknowledged by Kafka), by event type.",
            ["type"],
        )
        self.outbox_undelivered = self.counter(
            "inference_outbox_delivery_failures",
            "Events left in the outbox by a publish attempt (Kafka did not acknowledge them, "
            "or an earlier event of the same job); they go out later, in order.",
        )
        self.outbox_lag = self.histogram(
            "inference_outbox_lag_seconds",
            "From the state change that raised an event (its time) to Kafka's acknowledgement.",
            buckets=_LAG_BUCKETS,
        )
        self.outbox_waiting = self.gauge(
            "inference_outbox_waiting_jobs",
            "Jobs written with new events that the relay has not picked up yet (read when "
            "scraped).",
        )
        self.results_folded = self.counter(
            "inference_results_folded",
            "Result events by type and outcome: applied; ignored (a duplicate, or stale for "
            "the job's state); dead_lettered (type `invalid`: not an event of ours).",
            ["type", "outcome"],
        )
        self.sse_streams = self.gauge(
            "inference_sse_streams_open",
            "Server-sent event streams open on this instance (read when scraped).",
        )
