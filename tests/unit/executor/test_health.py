"""The HTTP endpoints answer what their checks say, and /metrics speaks Prometheus."""

from __future__ import annotations

import httpx
import pytest

from executor_service.health import HealthServer
from executor_service.metrics import Metrics


@pytest.fixture
def server():
    state = {"ready": False}
    metrics = Metrics()
    metrics.inference_seconds.labels("mnist").observe(0.0002)
    metrics.jobs.labels("completed").inc()
    metrics.consumer_lag.labels("jobs", "0").set(7)
    health = HealthServer(
        "127.0.0.1",
        0,
        metrics.registry,
        alive=lambda: (True, {}),
        ready=lambda: (state["ready"], {"models_loaded": state["ready"]}),
    )
    health.start()
    try:
        yield f"http://127.0.0.1:{health.port}", state
    finally:
        health.stop()


def test_probes_follow_their_checks(server) -> None:
    base, state = server
    assert httpx.get(f"{base}/healthz").status_code == 200
    not_ready = httpx.get(f"{base}/readyz")
    assert not_ready.status_code == 503
    assert not_ready.json() == {"status": "unavailable", "models_loaded": False}
    state["ready"] = True
    assert httpx.get(f"{base}/readyz").status_code == 200
    assert httpx.get(f"{base}/nothing").status_code == 404


def test_metrics_exposition(server) -> None:
    base, _ = server
    text = httpx.get(f"{base}/metrics").text
    assert 'executor_inference_seconds_bucket{le="0.0005",model="mnist"} 1.0' in text
    assert 'executor_jobs_total{outcome="completed"} 1.0' in text
    assert 'inference_executor_consumer_lag{partition="0",topic="jobs"} 7.0' in text
