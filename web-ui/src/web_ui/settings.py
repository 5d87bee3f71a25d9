"""The page's settings, read from the environment (pydantic-settings, as in every service)."""

from __future__ import annotations

from typing import Final

from pydantic import AliasChoices, Field, PositiveInt
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_API_URL: Final = "http://127.0.0.1:8080/api/v1/inference"
MIB: Final = 1024 * 1024


class UiSettings(BaseSettings):
    """`API_URL`, `API_KEY`, `WEB_UI_POLL_INTERVAL_S`, `WEB_UI_JOB_TIMEOUT_S`,
    `WEB_UI_REQUEST_TIMEOUT_S`; and the job service's own `MAX_IMAGE_BYTES` and
    `MAX_IMAGE_PIXELS` (the API does not publish its limits, so a deployment sets them once for
    both; the defaults are the service's, which a unit test holds them to)."""

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
    max_image_bytes: PositiveInt = 10 * MIB
    max_image_pixels: PositiveInt = 40_000_000

    @property
    def max_upload_mb(self) -> int:
        """Streamlit's upload limit is whole megabytes: round down, never above the API's."""
        return max(1, self.max_image_bytes // MIB)

    def image_limits(self) -> str:
        """`10 MiB and 40 megapixels`, as the uploader states them."""
        size = (
            f"{self.max_image_bytes / MIB:g} MiB"
            if self.max_image_bytes >= MIB
            else f"{self.max_image_bytes:,} bytes"
        )
        return f"{size} and {self.max_image_pixels / 1e6:g} megapixels"


def load_settings() -> UiSettings:
    return UiSettings()
