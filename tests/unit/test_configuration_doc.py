"""docs/configuration.md names every setting of every service."""

from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from executor_service.settings import ExecutorSettings
from inference_common.settings import CommonSettings
from inference_service.settings import ServiceSettings
from simulator.settings import SimulatorSettings

DOC = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()


@pytest.mark.parametrize(
    "settings", [CommonSettings, ServiceSettings, ExecutorSettings, SimulatorSettings]
)
def test_every_setting_is_documented(settings: type[BaseSettings]) -> None:
    undocumented = [n.upper() for n in settings.model_fields if f"`{n.upper()}`" not in DOC]
    assert undocumented == []
