"""The half-load point of `make bench`: an open-loop load at a constant arrival rate.

wrk is closed-loop: a slow answer delays the next request, so a stall hides itself. Here the
arrivals keep their schedule whatever the answers do (a new connection when none is free), and
each latency is counted from the request's scheduled time, not from when it could be sent.
The client is a minimal HTTP/1.1 one on asyncio streams, the requests' bytes built once, so
its CPU cost per job stays small; the table prints it.

Modes as benchmarks/post_image.lua's: `body` posts the image as the raw body (one request);
`jobs` posts it to `POST /jobs?model=...&execute=true`, long-polls `GET /jobs/{id}?wait=25`
until the job is finished, then reads `GET /jobs/{id}/result`.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from benchmarks.load import Load, Mode

MODEL: Final = "mobilenet-v2-imagenet-quant"
TIMEOUT_S: Final = 40.0
# Servers close a keep-alive connection left idle (uvicorn after 5 s): one idle longer than
# this is closed here first, so no request is lost to a race with the server's close.
IDLE_S: Final = 2.0
_FINISHED: Final = frozenset({"DONE", "FAILED", "CANCELLED"})


class _Failed(Exception):
    pass


@dataclass(frozen=True)
class _Target:
    host: str
    port: int
    path: str  # the URL's path: the system's endpoint, or the API base in jobs mode


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = time.monotonic()

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        length = 0
        for line in header_lines:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        body = await self.reader.readexactly(length) if length else b""
        return int(status_line.split(" ", 2)[1]), body

    def close(self) -> None:
        self.writer.close()


def _request(method: str, target: _Target, path: str, body: bytes = b"") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: {target.host}:{target.port}\r\n"
    if method == "POST":
        head += f"Content-Type: image/jpeg\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


class _Generator:
    def __init__(self, url: str, mode: Mode, image: bytes) -> None:
        parts = urlsplit(url)
        self.target = _Target(parts.hostname or "127.0.0.1", parts.port or 80, parts.path or "/")
        self.mode = mode
        base = self.target.path.rstrip("/")
        path = f"{base}/jobs?model={MODEL}&execute=true" if mode == "jobs" else self.target.path
        self.post = _request("POST", self.target, path, image)
        self.idle: list[_Connection] = []
        self.latencies: list[float] = []
        self.failed = 0

    async def one(self, scheduled: float) -> None:
        connection: _Connection | None = None
        try:
            connection = await self._connection()
            await asyncio.wait_for(self._job(connection), TIMEOUT_S)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError, KeyError, _Failed):
            self.failed += 1
            if connection is not None:
                connection.close()
            return
        self.latencies.append((time.monotonic() - scheduled) * 1000)
        connection.idle_since = time.monotonic()
        self.idle.append(connection)

    async def _connection(self) -> _Connection:
        """The most recently used idle connection, else a new one."""
        while self.idle:
            connection = self.idle.pop()
            if time.monotonic() - connection.idle_since < IDLE_S:
                return connection
            connection.close()
        reader, writer = await asyncio.open_connection(self.target.host, self.target.port)
        return _Connection(reader, writer)

    async def _job(self, connection: _Connection) -> None:
        status, body = await connection.exchange(self.post)
        if self.mode == "body":
            if status >= 300:
                raise _Failed
            return
        if status != 201:
            raise _Failed
        job = json.loads(body)
        base = self.target.path.rstrip("/") + f"/jobs/{job['id']}"
        while job["status"] not in _FINISHED:
            status, body = await connection.exchange(
                _request("GET", self.target, base + "?wait=25")
            )
            if status != 200:
                raise _Failed
            job = json.loads(body)
        if job["status"] != "DONE":
            raise _Failed
        status, _ = await connection.exchange(_request("GET", self.target, base + "/result"))
        if status != 200:
            raise _Failed

    def close(self) -> None:
        for connection in self.idle:
            connection.close()


async def _run(url: str, mode: Mode, image: bytes, rate: float, seconds: float) -> Load:
    generator = _Generator(url, mode, image)
    interval = 1.0 / rate
    cpu_before = time.process_time()
    began = time.monotonic()
    arrivals = int(rate * seconds)
    tasks = []
    for n in range(arrivals):
        scheduled = began + n * interval
        await asyncio.sleep(max(0.0, scheduled - time.monotonic()))
        tasks.append(asyncio.create_task(generator.one(scheduled)))
    await asyncio.gather(*tasks)
    elapsed = time.monotonic() - began
    cpu_s = time.process_time() - cpu_before
    generator.close()
    latencies = sorted(generator.latencies)

    def percentile(p: float) -> float:
        return latencies[max(0, math.ceil(len(latencies) * p / 100) - 1)] if latencies else -1.0

    return Load(
        connections=0,
        done=len(latencies),
        failed=generator.failed,
        seconds=elapsed,
        p50_ms=percentile(50),
        p99_ms=percentile(99),
        cpu_s=cpu_s,
    )


def run(url: str, mode: Mode, image: Path, rate: float, seconds: float) -> Load:
    """`rate` jobs per second, arriving on schedule for `seconds`; every one waited for."""
    return asyncio.run(_run(url, mode, image.read_bytes(), rate, seconds))
