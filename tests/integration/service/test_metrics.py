"""`/metrics` after real traffic: requests, jobs, outbox, folded results and open streams."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from inference_common.tracecontext import new_traceparent, trace_id
from tests.integration.service.harness import (
    BASE,
    Executor,
    RunningService,
    SseReader,
    TopicReader,
    image_bytes,
    post_job,
    requests_for,
    running,
    wait_for,
    wait_status,
)

pytestmark = pytest.mark.integration

MODEL = "mobilenet-v2-imagenet-quant"


class Scrape:
    """One reading of /metrics, sample by name and labels."""

    def __init__(self, url: str) -> None:
        response = httpx.get(url + "/metrics")
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/plain")
        self.samples = {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(response.text)
            for sample in family.samples
        }

    def __call__(self, name: str, **labels: str) -> float:
        return self.samples.get((name, frozenset(labels.items())), 0.0)


def requests(scrape: Scrape, method: str, route: str, status: int) -> float:
    return scrape(
        "inference_http_request_duration_seconds_count",
        method=method,
        route=BASE + route,
        status=str(status),
    )


def test_metrics_follow_a_job_through_the_service(
    service: RunningService, jobs_topic: TopicReader, executor: Executor
) -> None:
    stream = SseReader(f"{service.url}{BASE}/events")
    stream.wait_ready()
    caller = new_traceparent()
    response = post_job(
        service.client, image=image_bytes(), execute=True, headers={"traceparent": caller}
    )
    assert response.status_code == 201, response.text
    job = response.json()
    assert trace_id(response.headers["traceparent"]) == trace_id(caller) == job["trace_id"]

    [request] = requests_for(jobs_topic, job["id"], 1)
    executor.started(request)
    completed = executor.completed(request)
    executor.completed(request, event_id=completed)  # a redelivery: folded once
    wait_status(service.client, job["id"], "DONE")
    assert service.client.get(f"/jobs/{'0' * 32}").status_code == 404

    def folded_twice() -> bool:
        return (
            Scrape(service.url)(
                "inference_results_folded_total", type="job.completed.v1", outcome="ignored"
            )
            == 1
        )

    wait_for(folded_twice, 20, "the duplicate to be ignored")
    scrape = Scrape(service.url)
    assert requests(scrape, "POST", "/jobs", 201) == 1
    assert requests(scrape, "GET", "/jobs/{job_id}", 200) >= 1
    assert requests(scrape, "GET", "/jobs/{job_id}", 404) == 1
    assert scrape("inference_jobs_created_total", model=MODEL) == 1
    transitions = {
        status: scrape("inference_job_transitions_total", status=status)
        for status in ("NEW", "QUEUED", "RUNNING", "DONE")
    }
    assert transitions == {"NEW": 0, "QUEUED": 1, "RUNNING": 1, "DONE": 1}
    for event_type in ("job.created.v1", "job.execution_requested.v1"):
        assert scrape("inference_outbox_events_published_total", type=event_type) == 1
    assert scrape("inference_outbox_lag_seconds_count") == 2
    assert scrape("inference_outbox_waiting_jobs") == 0
    folded: dict[tuple[str, str], float] = {
        (event_type, outcome): scrape(
            "inference_results_folded_total", type=event_type, outcome=outcome
        )
        for event_type in ("job.started.v1", "job.completed.v1")
        for outcome in ("applied", "ignored")
    }
    assert folded == {
        ("job.started.v1", "applied"): 1,
        ("job.started.v1", "ignored"): 0,
        ("job.completed.v1", "applied"): 1,
        ("job.completed.v1", "ignored"): 1,
    }
    assert scrape("inference_sse_streams_open") == 1
    service.runtime.end_streams()
    assert stream.ended.wait(10)
    wait_for(lambda: Scrape(service.url)("inference_sse_streams_open") == 0, 10, "no streams")


def test_metrics_need_no_api_key_while_the_api_does(isolated_env: dict[str, Any]) -> None:
    with running(api_keys="k1:alice", run_live=False) as service:
        assert service.client.get("/models").status_code == 401
        scrape = Scrape(service.url)
        assert requests(scrape, "GET", "/models", 401) == 1
        # Outside the API's base path: never an API route, whatever the base path is.
        assert httpx.get(f"{service.url}{BASE}/metrics").status_code == 404
