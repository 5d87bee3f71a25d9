from __future__ import annotations

import json
import logging

import pytest

from executor_service.logs import JsonFormatter
from executor_service.settings import ExecutorSettings


def test_json_log_lines_carry_job_and_trace_ids() -> None:
    record = logging.LogRecord("executor", logging.INFO, "x.py", 1, "done %s", ("ok",), None)
    record.job_id = "a" * 32
    record.trace_id = "b" * 32
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "done ok"
    assert (line["job_id"], line["trace_id"], line["level"]) == ("a" * 32, "b" * 32, "INFO")


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXECUTOR_WORKERS", "3")
    monkeypatch.setenv("EXECUTOR_GROUP_ID", "executor-blue")
    settings = ExecutorSettings()
    assert settings.executor_group_id == "executor-blue"
    assert settings.max_in_flight == 12  # four per worker unless set
    monkeypatch.setenv("EXECUTOR_MAX_IN_FLIGHT", "5")
    assert ExecutorSettings().max_in_flight == 5
