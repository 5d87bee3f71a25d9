"""The page's settings, read from the environment (pydantic-settings, as in every service)."""

from __future__ import annotations

from typing import Final

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_API_URL: Final = "http://127.0.0.1:8080/api/v1/inference"


class UiSettings(BaseSettings):
    """`API_URL`, `API_KEY`, `WEB_UI_POLL_INTERVAL_S`, `WEB_UI_JOB_TIMEOUT_S`."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    api_url: str = DEFAULT_API_URL
    api_key: str | None = None
    poll_interval_s: float = Field(
        default=0.3, gt=0, validation_alias=AliasChoices("web_ui_poll_interval_s")
    )
    job_timeout_s: float = Field(
        default=60.0, gt=0, validation_alias=AliasChoices("web_ui_job_timeout_s")
    )
    request_timeout_s: float = Field(
        default=10.0, gt=0, validation_alias=AliasChoices("web_ui_request_timeout_s")
    )


def load_settings() -> UiSettings:
    return UiSettings()
