"""Clients ride out a restart: `simulator simulate` against a job service that this test kills
(SIGKILL) mid-run and starts again on the same port 15 s later. Every planned job is created
once (the same Idempotency-Key through every retry) and ends DONE, and the progress line said
what was going on."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from tests.integration.simulator.test_simulate_platform import (
    ROOT,
    free_port,
    start,
    stop,
    wait_for_api,
)

JOBS = 40
RATE = 2.0  # jobs a second: 20 s of traffic, open loop (jobs keep coming during the outage)
KILL_AFTER_JOBS = 8
OUTAGE_S = 15.0
# The process starts again after OUTAGE_S, but on a machine this busy its imports alone may take
# a minute more: the simulation rides out whatever the outage turns out to be, up to RIDE_OUT_S.
RESTART_TIMEOUT_S = 180
RIDE_OUT_S = 300

pytestmark = [pytest.mark.integration, pytest.mark.timeout(RESTART_TIMEOUT_S + RIDE_OUT_S + 300)]


class Platform:
    """The job service and one executor on a free port, over the test's topics and database;
    the service can be killed and started again on the same port."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.url = f"http://127.0.0.1:{env['PORT']}/api/v1/inference"
        self._outputs: list[IO[bytes]] = []
        self.executor = start("executor-service", env, self._log("executor"))
        self.service = self.start_service()

    def _log(self, name: str) -> IO[bytes]:
        out = (self.logs / f"{name}-{len(self._outputs)}.log").open("wb")
        self._outputs.append(out)
        return out

    def start_service(self) -> subprocess.Popen[bytes]:
        out = self._log("service")
        self.service = start("inference-service", self.env, out)
        wait_for_api(self.url, self.service, Path(out.name), RESTART_TIMEOUT_S)
        return self.service

    def kill_service(self) -> None:
        self.service.send_signal(signal.SIGKILL)
        self.service.wait()

    def close(self) -> None:
        stop(self.executor)
        stop(self.service)
        for out in self._outputs:
            out.close()


@pytest.fixture
def platform(isolated_env: dict[str, str], tmp_path: Path) -> Iterator[Platform]:
    port = str(free_port())
    env = {
        **os.environ,
        "PORT": port,
        "SERVICE_PORT": port,
        "HOST": "127.0.0.1",
        "OPENAPI_DIR": str(ROOT / "openapi"),
        "EXECUTOR_HTTP_PORT": "0",
        "EXECUTOR_WORKERS": "2",
    }
    running = Platform(env, tmp_path)
    try:
        yield running
    finally:
        running.close()


def jobs_stored(url: str) -> int:
    return len(httpx.get(f"{url}/jobs", params={"limit": 100}, timeout=10).json()["items"])


def test_a_simulation_rides_out_a_job_service_restart(platform: Platform, tmp_path: Path) -> None:
    report_path = tmp_path / "report.json"
    command = [sys.executable, "-m", "simulator", "simulate", "--api", platform.url]
    command += ["--jobs", str(JOBS), "--rate", str(RATE), "--retry-for", str(RIDE_OUT_S)]
    command += ["--result-timeout", str(RIDE_OUT_S + 60)]
    command += ["--json", str(report_path)]
    with (
        (tmp_path / "simulator.out").open("w+") as out,
        (tmp_path / "simulator.err").open("w+") as err,
    ):
        simulation = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=err, text=True)
        try:
            deadline = time.monotonic() + 120
            while jobs_stored(platform.url) < KILL_AFTER_JOBS:
                assert simulation.poll() is None, "the simulation ended before the restart"
                assert time.monotonic() < deadline, "the simulation did not get going"
                time.sleep(0.2)
            platform.kill_service()
            killed_at = time.monotonic()
            time.sleep(OUTAGE_S)
            platform.start_service()
            outage_s = time.monotonic() - killed_at
            returncode = simulation.wait(timeout=RIDE_OUT_S + 120)
        finally:
            if simulation.poll() is None:
                simulation.kill()
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()

    assert returncode == 0, stdout + stderr
    assert outage_s >= OUTAGE_S
    print(f"outage {outage_s:.0f} s; simulator stderr:\n{stderr}")  # shown with -s or on failure
    report: dict[str, Any] = json.loads(report_path.read_text())
    # 0 jobs not created: every planned job was created, once, and finished.
    assert report["jobs"] == {
        "requested": JOBS,
        "submitted": JOBS,
        "created": JOBS,
        "terminal": JOBS,
    }
    assert report["statuses"] == {"DONE": JOBS}
    assert jobs_stored(platform.url) == JOBS  # no retry created a second job
    assert report["request_retries"].get("unreachable", 0) > 0  # the outage was real
    # The progress line (printed as lines without a terminal) said so, and said when it ended.
    assert "job service unreachable, retrying (" in stderr, stderr
    assert "job service answers again after" in stderr, stderr
