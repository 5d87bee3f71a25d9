"""The `inference-service` process: starts, serves, and stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from inference_common.kafka import ensure_topics
from tests.integration.service.harness import (
    BASE,
    ROOT,
    SseReader,
    free_port,
    jobs_in_db,
    service_settings,
    wait_for,
)

pytestmark = pytest.mark.integration


def test_sigterm_drains_open_streams_and_exits(isolated_env: dict[str, str]) -> None:
    ensure_topics(service_settings())
    port = free_port()
    env = {
        **os.environ,
        "SERVICE_PORT": str(port),
        "OPENAPI_DIR": str(ROOT / "openapi"),
        "LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "inference_service"], env=env, cwd=ROOT, stderr=subprocess.PIPE
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
            assert time.monotonic() < deadline, "the service did not get ready"
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        stream = SseReader(f"{url}{BASE}/events")
        stream.wait_ready()

        mongo, _ = jobs_in_db(service_settings())
        leases = mongo[os.environ["MONGODB_DATABASE"]]["leases"]
        wait_for(lambda: leases.count_documents({}) == 1, 10, "the relay's lease")

        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        # uvicorn re-raises the signal once it has shut down: "terminated by SIGTERM".
        assert process.wait(timeout=30) in (0, -signal.SIGTERM)
        assert time.monotonic() - started < 15
        assert stream.ended.wait(5), "the open event stream was not ended"
        # The lifespan shutdown ran: the relay gave its lease back for the next replica.
        assert leases.count_documents({}) == 0
        mongo.close()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
