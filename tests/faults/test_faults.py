"""The CI-sized fault-injection run: each fault once, on a private stack (tests/faults/runner.py),
in the open loop (jobs keep coming while the platform is down, so creates must ride out the job
service's restart).

`make faults` runs the full one (1,000 jobs at 10 per second); docs/faults.md has its figures.
Only outcomes are asserted, never timings: the machine is shared. The per-fault recovery is
printed (pytest -s).
"""

from __future__ import annotations

import shutil

import pytest

from tests.faults.runner import DATABASE, EXECUTOR, KAFKA, SERVICE, FaultPlan, run_faults

pytestmark = [
    pytest.mark.integration,
    pytest.mark.faults,
    pytest.mark.skipif(shutil.which("java") is None, reason="the private Kafka needs a JDK"),
    pytest.mark.timeout(1200),
]


def test_every_job_survives_each_kind_of_fault_once() -> None:
    plan = FaultPlan(jobs=150, executors=2, executor_kills=1, rate=2.0, concurrency=None)

    figures = run_faults(plan)

    print("\n".join(figures.lines()))
    assert figures.faults.counts() == {EXECUTOR: 1, KAFKA: 1, SERVICE: 1, DATABASE: 1}
    assert figures.not_created == 0, "the client gave up on creating some job"
    assert figures.report.jobs_in_database == plan.jobs
    assert figures.report.problems() == []
    assert figures.report.lost == {}
    assert figures.report.duplicated_in_effect == {}
    assert set(figures.report.statuses) <= {"DONE", "FAILED"}
