"""The bench's own logic that needs no servers: the results page, the ratios, CPU of a tree."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.load import Load
from benchmarks.pipeline import BEGIN, CELERY, CLASSIFY, END, SYNC, Figures, table, write_results
from benchmarks.processes import cpu_seconds, tree_cpu_seconds


def load(rate: float) -> Load:
    return Load(
        connections=2, done=int(rate * 10), failed=0, seconds=10.0, p50_ms=40, p99_ms=80, cpu_s=0.1
    )


def test_the_results_block_is_replaced_and_the_prose_around_it_kept(tmp_path: Path) -> None:
    page = tmp_path / "benchmarks.md"
    page.write_text(f"# Title\n\nbefore\n\n{BEGIN}\nold figures\n{END}\n\nafter\n")
    write_results(page, "Measured now.", "| new | table |")
    assert page.read_text() == (
        f"# Title\n\nbefore\n\n{BEGIN}\nMeasured now.\n\n| new | table |\n{END}\n\nafter\n"
    )


def test_a_page_without_markers_gets_the_block_appended(tmp_path: Path) -> None:
    page = tmp_path / "benchmarks.md"
    page.write_text("# Title\n")
    write_results(page, "Measured now.", "| t |")
    assert page.read_text() == f"# Title\n\n{BEGIN}\nMeasured now.\n\n| t |\n{END}\n"


def test_ratios_are_the_platforms_rates_over_each_peers_at_the_same_connections() -> None:
    def figures(name: str, low: float, high: float) -> Figures:
        return Figures(name, load(low), load(high), load(high / 2), {"endpoint": 20.0}, "", None)

    text = table([figures(CLASSIFY, 30, 40), figures(SYNC, 60, 80), figures(CELERY, 15, 40)])
    ratio_row = next(line for line in text.splitlines() if line.startswith(f"| {CLASSIFY} | 0"))
    assert ratio_row == f"| {CLASSIFY} | 0.50x | 0.50x | 2.00x | 1.00x |"
    cells = "60.0 (40 / 80) | 80.0 (40 / 80) | 40.0 (40 / 80)"
    assert f"| {SYNC} | {cells} | endpoint 20.0 | - |" in text


def test_the_cpu_of_a_tree_counts_its_children() -> None:
    # A parent that only waits, and a child that burns 0.3 s of CPU and then stays alive.
    child = (
        "import time\nend = time.process_time() + 0.3\n"
        "while time.process_time() < end: pass\ntime.sleep(60)"
    )
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import subprocess, sys; subprocess.run([sys.executable, '-c', {child!r}])",
        ],
        start_new_session=True,
    )
    try:
        for _ in range(600):
            if tree_cpu_seconds(parent.pid) - cpu_seconds(parent.pid) >= 0.29:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the child's CPU time never counted")
    finally:
        os.killpg(parent.pid, signal.SIGKILL)
        parent.wait()
