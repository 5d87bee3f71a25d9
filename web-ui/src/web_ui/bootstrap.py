"""Wiring: the API client the page uses. Tests replace `http_transport` to fake the server."""

from __future__ import annotations

import httpx

from web_ui.api import InferenceApi
from web_ui.settings import UiSettings


def http_transport() -> httpx.BaseTransport | None:
    """None: httpx's own transport, the real network."""
    return None


def make_api(settings: UiSettings) -> InferenceApi:
    return InferenceApi(
        settings.api_url,
        settings.api_key,
        transport=http_transport(),
        timeout_s=settings.request_timeout_s,
    )
