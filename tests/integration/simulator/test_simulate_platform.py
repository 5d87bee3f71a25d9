"""`simulator simulate` against the real platform: the job service and an executor, started
here on a free port with the test's own topics and database."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
START_TIMEOUT_S = 90
RUN_TIMEOUT_S = 300


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(program: str, env: dict[str, str], log: IO[bytes]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / program)], cwd=ROOT, env=env, stdout=log, stderr=log
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for_api(
    url: str, service: subprocess.Popen[bytes], log: Path, timeout_s: float = START_TIMEOUT_S
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if service.poll() is not None:
            pytest.fail(
                f"inference-service exited {service.returncode}:\n{log.read_text()[-3000:]}"
            )
        try:
            if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    pytest.fail(f"inference-service not ready in {timeout_s:g} s:\n{log.read_text()[-3000:]}")


@pytest.fixture
def api_url(isolated_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """The job service and one executor, sharing the test's topics and database."""
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "SERVICE_PORT": str(port),
        "HOST": "127.0.0.1",
        "OPENAPI_DIR": str(ROOT / "openapi"),
        "EXECUTOR_HTTP_PORT": "0",
        "EXECUTOR_WORKERS": "2",
        # The demo scenario's webhook receiver listens on loopback over http, as under
        # `make serve`.
        "WEBHOOK_ALLOW_HTTP": "true",
        "WEBHOOK_ALLOW_LOOPBACK": "true",
    }
    url = f"http://127.0.0.1:{port}/api/v1/inference"
    service_log, executor_log = tmp_path / "service.log", tmp_path / "executor.log"
    with service_log.open("wb") as service_out, executor_log.open("wb") as executor_out:
        service = start("inference-service", env, service_out)
        executor = start("executor-service", env, executor_out)
        try:
            wait_for_api(url, service, service_log)
            yield url
        finally:
            stop(executor)
            stop(service)


def simulator(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "simulator", "simulate", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )


def test_every_job_reaches_a_final_status_and_the_report_matches_the_api(
    api_url: str, tmp_path: Path
) -> None:
    report_path = tmp_path / "report.json"
    models = [m["name"] for m in httpx.get(f"{api_url}/models").json()["items"]]
    jobs = 3 * len(models)  # round robin: three per model
    done = simulator(
        "--api",
        api_url,
        "--jobs",
        str(jobs),
        "--concurrency",
        "5",
        "--json",
        str(report_path),
        "--result-timeout",
        "120",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report: dict[str, Any] = json.loads(report_path.read_text())
    assert report["models"] == models
    assert report["jobs"] == {
        "requested": jobs,
        "submitted": jobs,
        "created": jobs,
        "terminal": jobs,
    }
    assert report["event_stream"]["connected"] is True

    # What the API says now about every job is what the report says.
    api_statuses: Counter[str] = Counter()
    for record in report["job_records"]:
        job = httpx.get(f"{api_url}/jobs/{record['job_id']}").json()
        assert job["status"] == record["status"], record
        assert job["model"] == record["model"]
        api_statuses[job["status"]] += 1
    assert report["statuses"] == dict(api_statuses)
    assert report["statuses"] == {"DONE": jobs}  # every sample image suits its model
    assert report["latency_s"]["count"] == jobs
    assert {model: entry["statuses"] for model, entry in report["by_model"].items()} == {
        model: {"DONE": 3} for model in models
    }
    digits = [r for r in report["job_records"] if r["model"].startswith("mnist")]
    assert digits and all(r["image"].startswith("mnist-") for r in digits)
    assert f"{jobs} of {jobs} jobs submitted, {jobs} finished" in done.stdout


def test_the_demo_scenario_runs_every_operation(api_url: str) -> None:
    done = simulator("--api", api_url, "--scenario", "demo")
    assert done.returncode == 0, done.stdout + done.stderr
    for expected in ("202 Accepted", "CANCELLED", "204 No Content", "404 Not Found", "detected"):
        assert expected in done.stdout
    assert "Seven people and three kites (scene: seashore)." in done.stdout
    assert "unexpected" not in done.stdout
