"""docs/configuration.md names every setting of every service."""

from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from executor_service.settings import ExecutorSettings
from inference_common.settings import CommonSettings
from inference_service.settings import ServiceSettings
from simulator.settings import SimulatorSettings
from web_ui.settings import UiSettings

DOC = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()


def variables(settings: type[BaseSettings]) -> list[str]:
    """The environment variable of each field: its alias when it has one, else its name."""
    names = []
    for name, field in settings.model_fields.items():
        alias = field.validation_alias
        choices = getattr(alias, "choices", None)
        names.append(str(choices[0] if choices else name).upper())
    return names


@pytest.mark.parametrize(
    "settings", [CommonSettings, ServiceSettings, ExecutorSettings, SimulatorSettings, UiSettings]
)
def test_every_setting_is_documented(settings: type[BaseSettings]) -> None:
    undocumented = [name for name in variables(settings) if f"`{name}`" not in DOC]
    assert undocumented == []
