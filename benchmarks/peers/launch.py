"""Starts and stops the peers for `benchmarks.pipeline`: each is a context manager yielding
where to post and which processes do its work (their trees' CPU time counts)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from benchmarks.processes import free_port

HOST: Final = "127.0.0.1"
WORKERS: Final = 2  # processes, one per core: uvicorn workers and Celery's prefork children
START_TIMEOUT_S: Final = 120.0


@dataclass(frozen=True)
class Peer:
    url: str
    processes: dict[str, int]  # name -> pid of the process whose tree does that work
    redis_url: str | None = None  # its store, when it has one


def uvicorn_argv(app: str, port: int) -> list[str]:
    """httptools and uvloop: with the pure-Python h11 parser a 104 KB body costs the peer up
    to half its speed, a handicap no one would deploy."""
    return [
        sys.executable, "-m", "uvicorn", app,
        "--host", HOST, "--port", str(port), "--workers", str(WORKERS),
        "--http", "httptools", "--loop", "uvloop",
        "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip


@contextmanager
def sync_endpoint(image: bytes) -> Iterator[Peer]:
    port = free_port()
    with _started(uvicorn_argv("benchmarks.peers.sync_endpoint:app", port)) as server:
        url = f"http://{HOST}:{port}/"
        _wait_until_it_classifies(url, image)
        yield Peer(url, {"endpoint": server.pid})


@contextmanager
def celery_on_redis(image: bytes) -> Iterator[Peer]:
    redis_port, port = free_port(), free_port()
    redis_url = f"redis://{HOST}:{redis_port}/0"
    env = {**os.environ, "REDIS_URL": redis_url}
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as data, ExitStack() as stack:
        redis = stack.enter_context(_started(_redis_argv(redis_port, Path(data)), env))
        worker = stack.enter_context(_started(_celery_worker_argv(), env))
        server = stack.enter_context(
            _started(uvicorn_argv("benchmarks.peers.celery_peer:app", port), env)
        )
        url = f"http://{HOST}:{port}/"
        _wait_until_it_classifies(url, image)
        yield Peer(
            url,
            {"endpoint": server.pid, "Celery workers": worker.pid, "Redis": redis.pid},
            redis_url,
        )


def _celery_worker_argv() -> list[str]:
    return [
        sys.executable, "-m", "celery", "-A", "benchmarks.peers.celery_peer:celery_app",
        "worker", "--pool", "prefork", "--concurrency", str(WORKERS), "--loglevel", "WARNING",
    ]  # fmt: skip


def _redis_argv(port: int, data: Path) -> list[str]:
    """Debian's redis-server, durable as its docs advise: the append-only file, fsync'd every
    second. No config file: everything else stays at Redis's defaults."""
    return [
        "redis-server", "--bind", HOST, "--port", str(port), "--dir", str(data),
        "--appendonly", "yes", "--appendfsync", "everysec", "--loglevel", "warning",
    ]  # fmt: skip


@contextmanager
def _started(
    argv: list[str], env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """A process in a session of its own, so that stopping it stops its workers too."""
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, start_new_session=True)
    try:
        yield process
    finally:
        _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    with contextlib.suppress(ProcessLookupError):  # a worker that outlived its parent
        os.killpg(process.pid, signal.SIGKILL)


def _wait_until_it_classifies(url: str, image: bytes) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        request = urllib.request.Request(
            url, data=image, headers={"Content-Type": "image/jpeg"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer within {START_TIMEOUT_S:g} s")
        time.sleep(0.5)
