from __future__ import annotations

import pytest

from executor_service.settings import ExecutorSettings


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXECUTOR_WORKERS", "3")
    monkeypatch.setenv("EXECUTOR_GROUP_ID", "executor-blue")
    settings = ExecutorSettings()
    assert settings.executor_group_id == "executor-blue"
    assert settings.max_in_flight == 12  # four per worker unless set
    monkeypatch.setenv("EXECUTOR_MAX_IN_FLIGHT", "5")
    assert ExecutorSettings().max_in_flight == 5
