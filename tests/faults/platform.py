"""A private platform to break: its own Kafka and FerretDB (stack/localstack.py with a temporary
state directory and free loopback ports), one job service and a few executors as processes.

Nothing here touches the shared stack on the default ports: every port is picked free, and
every process is started, killed and restarted by this object alone, by its pid.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import IO

from tests.conftest import ROOT, load_localstack

START_TIMEOUT_S = 120.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Ports:
    kafka: int
    controller: int
    mongo: int
    api: int

    @classmethod
    def free(cls) -> Ports:
        return cls(free_port(), free_port(), free_port(), free_port())


class Child:
    """One service process (its own session, so no terminal signal reaches it), log appended."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log = log
        self.port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        assert not self.running, f"{self.name} is already running"
        handle: IO[bytes]
        with self.log.open("ab") as handle:
            handle.write(f"\n=== faults: starting {self.name} at {time.ctime()} ===\n".encode())
            handle.flush()
            self.process = subprocess.Popen(
                self.argv,
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.starts += 1

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crash or an OOM kill would: nothing gets to clean up."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)

    def stop(self, timeout: float = 30.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def tail(self, size: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-size:]
        except OSError:
            return "(no log)"


class FaultPlatform:
    """Kafka, FerretDB, the job service and `executors` executor processes, all private."""

    def __init__(self, workdir: Path, executors: int = 3, ports: Ports | None = None) -> None:
        self.workdir = workdir
        self.ports = ports or Ports.free()
        self.stack: ModuleType = load_localstack()
        self.cfg = self.stack.Config(
            state=workdir / "stack",
            kafka_port=self.ports.kafka,
            controller_port=self.ports.controller,
            mongo_port=self.ports.mongo,
            timeout=START_TIMEOUT_S,
            api_port=self.ports.api,
            executor_port=0,
            # The FerretDB binary and the Kafka classpath, built once (STACK_CACHE_DIR).
            cache=self.stack.Config.from_env().cache,
        )
        (workdir / "logs").mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": self.cfg.kafka_bootstrap,
            "MONGODB_URI": self.cfg.mongodb_uri,
            "ASSETS_MANIFEST": str(ROOT / "assets" / "manifest.toml"),
            "ASSETS_CACHE_DIR": str(ROOT / ".cache" / "assets"),
            "OPENAPI_DIR": str(ROOT / "openapi"),
            "LOG_LEVEL": "INFO",
        }
        self.service = Child(
            "inference-service",
            [sys.executable, "-m", "inference_service"],
            {**self.env, "SERVICE_PORT": str(self.ports.api)},
            workdir / "logs" / "inference-service.log",
        )
        self.executors = [self._executor(n) for n in range(executors)]

    def _executor(self, n: int) -> Child:
        port = free_port()
        env = {
            **self.env,
            "EXECUTOR_HTTP_PORT": str(port),
            "EXECUTOR_WORKERS": "1",
        }
        child = Child(
            f"executor-{n}",
            [sys.executable, "-m", "executor_service"],
            env,
            self.workdir / "logs" / f"executor-{n}.log",
        )
        child.port = port
        return child

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.api}/api/v1/inference"

    # --- bringing it up and down ---

    def start(self) -> None:
        self.stack.up(self.cfg)
        self.service.start()
        for executor in self.executors:
            executor.start()
        self.wait_ready(self.service, self.ports.api)
        for executor in self.executors:
            assert executor.port is not None
            self.wait_ready(executor, executor.port)

    def wait_ready(self, child: Child, port: int, timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while not self.stack.http_ready(port):
            if not child.running:
                raise RuntimeError(f"{child.name} exited while starting:\n{child.tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{child.name} not ready in {timeout:.0f} s:\n{child.tail()}")
            time.sleep(0.2)

    def close(self) -> None:
        """Everything this platform started, whatever state the run left it in."""
        for child in [*self.executors, self.service]:
            with contextlib.suppress(Exception):
                child.stop(timeout=15)
        self.stack.down(self.cfg)

    # --- the faults: each is a kill, then (after the runner's outage) a restart ---

    def kill(self, kind: str, n: int = 0) -> None:
        """SIGKILL of `kind`: "executor" (the n-th, round robin), "service", "kafka", "ferretdb"."""
        if kind == "executor":
            self.executors[n % len(self.executors)].kill()
        elif kind == "service":
            self.service.kill()
        elif self.stack.kill_service(kind, cfg=self.cfg) is None:
            raise RuntimeError(f"{kind} was not running when its fault came")

    def restart(self, kind: str, n: int = 0) -> None:
        """Start `kind` again and wait until it answers its readiness probe."""
        if kind == "executor":
            executor = self.executors[n % len(self.executors)]
            executor.start()
            assert executor.port is not None
            self.wait_ready(executor, executor.port)
        elif kind == "service":
            self.service.start()
            self.wait_ready(self.service, self.ports.api)
        else:
            self.stack.up(self.cfg)
