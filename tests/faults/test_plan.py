"""Which faults a run brings, and when: the schedule, and `--faults` to pick them."""

from __future__ import annotations

import argparse

import pytest

from tests.faults.runner import DATABASE, EXECUTOR, KAFKA, SERVICE, FaultPlan, fault_kinds


def test_every_kind_by_default_with_executor_kills_interleaved() -> None:
    plan = FaultPlan(jobs=1000, executor_kills=2)

    assert [kind for _, kind in plan.schedule()] == [EXECUTOR, DATABASE, EXECUTOR, KAFKA, SERVICE]
    assert plan.schedule()[0][0] == 100 and plan.schedule()[-1][0] == 750


def test_one_fault_alone_comes_at_the_first_share() -> None:
    plan = FaultPlan(jobs=400, executor_kills=0, others=fault_kinds("kafka"))

    assert plan.schedule() == [(40, KAFKA)]


def test_faults_are_named_on_the_command_line_in_their_order() -> None:
    assert fault_kinds("service, database") == (SERVICE, DATABASE)
    assert fault_kinds("") == ()
    with pytest.raises(argparse.ArgumentTypeError, match="unknown fault 'broker'"):
        fault_kinds("broker")
