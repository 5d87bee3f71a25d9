"""One trace from the HTTP request through the events to the executor and back.

Both services run as their own processes, configured as in production, so their JSON log
lines are checked as an operator's log pipeline would read them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from inference_common.tracecontext import trace_id
from tests.contracts import validate_kafka_event
from tests.integration.executor.support import ExecutorProcess, topic_reader
from tests.integration.service.harness import (
    BASE,
    ROOT,
    free_port,
    headers_of,
    image_bytes,
    post_job,
    service_settings,
    wait_status,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

CALLER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture
def service_url(isolated_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """`python -m inference_service`, its stderr in service.log."""
    settings = service_settings()  # the isolated topics and database, from the environment
    port = free_port()
    log = (tmp_path / "service.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "inference_service"],
        env={
            **os.environ,
            "SERVICE_PORT": str(port),
            "OPENAPI_DIR": str(ROOT / "openapi"),
            "FOLDER_GROUP_ID": settings.folder_group_id,
            "RELAY_POLL_INTERVAL_SECONDS": "0.5",
            "LOG_LEVEL": "INFO",
            "ACCESS_LOG": "true",
        },
        cwd=ROOT,
        stderr=log,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not _ready(url):
            assert process.poll() is None, (tmp_path / "service.log").read_text()
            assert time.monotonic() < deadline, "the service did not get ready"
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(30)
        log.close()


def _ready(url: str) -> bool:
    try:
        return httpx.get(url + "/readyz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def json_lines(path: Path) -> list[dict[str, Any]]:
    """The log's JSON lines (native libraries may print lines of their own)."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


def test_the_callers_trace_reaches_the_executor_and_comes_back(
    service_url: str, tmp_path: Path
) -> None:
    settings = service_settings()
    executor = ExecutorProcess(
        tmp_path / "executor.log", EXECUTOR_GROUP_ID=f"executor-{uuid.uuid4().hex[:8]}"
    )
    try:
        with httpx.Client(base_url=service_url + BASE, timeout=30) as client:
            response = post_job(
                client, image=image_bytes(), execute=True, headers={"traceparent": CALLER}
            )
            assert response.status_code == 201, response.text
            job_id = response.json()["id"]
            span = response.headers["traceparent"]
            job = wait_status(client, job_id, "DONE", timeout=120)
    finally:
        executor.stop()

    # The answer names the service's own span, in the caller's trace.
    assert trace_id(span) == TRACE and span != CALLER
    assert job["trace_id"] == TRACE
    # The job service's events carry exactly that span; the executor's continue the trace.
    with topic_reader(settings, settings.topic_jobs) as reader:
        jobs_events = reader.read_until(lambda messages: len(messages) >= 2)
    with topic_reader(settings, settings.topic_results) as reader:
        results = reader.read_until(lambda messages: len(messages) >= 2)
    for message in jobs_events:
        validate_kafka_event(message.headers(), message.value())
        assert headers_of(message)["ce_traceparent"] == span
    for message in results:
        validate_kafka_event(message.headers(), message.value())
        traceparent = headers_of(message)["ce_traceparent"]
        assert trace_id(traceparent) == TRACE and traceparent != span
    assert {headers_of(m)["ce_type"].split(".")[-2] for m in results} == {"started", "completed"}

    # Both services' log lines about the job carry its id and the caller's trace.
    service_log = json_lines(tmp_path / "service.log")
    about_job = {line["message"]: line for line in service_log if line.get("job_id") == job_id}
    assert {"job created", "result applied: job DONE"} <= set(about_job), service_log
    assert {line["trace_id"] for line in about_job.values()} == {TRACE}
    [access] = [
        line
        for line in service_log
        if line["logger"] == "inference_service.access" and line["method"] == "POST"
    ]
    assert (access["route"], access["status"], access["trace_id"]) == (BASE + "/jobs", 201, TRACE)
    assert any(line["logger"].startswith("uvicorn") for line in service_log)
    executor_log = json_lines(tmp_path / "executor.log")
    [completed] = [line for line in executor_log if line["message"] == "execution completed"]
    assert (completed["job_id"], completed["trace_id"]) == (job_id, TRACE)
