"""The one load generator of `make bench`: wrk (Debian's) with benchmarks/post_image.lua.

wrk's own CPU time is measured too (user + system, from the kernel's accounting of waited-for
children), so the table can say what the load generator cost per job.
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

SCRIPT: Final = Path(__file__).with_name("post_image.lua")
# Above the longest long poll of the jobs mode (25 s): a slow answer is a latency, not an error.
TIMEOUT_S: Final = 40

Mode = Literal["body", "jobs"]


@dataclass(frozen=True)
class Load:
    """What one run of wrk achieved."""

    connections: int
    done: int  # jobs with an answer (body: 2xx/3xx responses; jobs: results read)
    failed: int  # non-2xx answers, failed jobs, socket errors and timeouts
    seconds: float
    p50_ms: float
    p99_ms: float
    cpu_s: float  # wrk's own CPU time

    @property
    def rate(self) -> float:
        return self.done / self.seconds

    @property
    def cpu_ms_per_job(self) -> float:
        return self.cpu_s * 1000 / max(self.done, 1)


def wrk_path() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise SystemExit("the benchmark needs wrk (Debian: apt-get install wrk)")
    return found


def run(url: str, mode: Mode, image: Path, connections: int, seconds: float) -> Load:
    """`connections` clients in a closed loop for `seconds`, one wrk thread each."""
    argv = [
        wrk_path(),
        f"-t{connections}",
        f"-c{connections}",
        f"-d{seconds:g}s",
        f"--timeout={TIMEOUT_S}s",
        f"--script={SCRIPT}",
        url,
        "--",
        str(image),
        mode,
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    finished = subprocess.run(argv, capture_output=True, text=True, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    lines = [line for line in finished.stdout.splitlines() if line.startswith("{")]
    if finished.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({finished.returncode}): {finished.stderr.strip()}")
    figures = json.loads(lines[-1])
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Load(connections=connections, cpu_s=cpu_s, **figures)
