"""Wiring: the API client the page uses. Tests replace `http_transport` to fake the server, and
may replace `retry_policy` so that an outage costs them no wall-clock time."""

from __future__ import annotations

import httpx

from inference_client import InferenceClient, RetryPolicy
from web_ui.settings import UiSettings


def http_transport() -> httpx.AsyncBaseTransport | None:
    """None: httpx's own transport, the real network."""
    return None


def retry_policy() -> RetryPolicy:
    """The client's own: a restart of the job service is ridden out, a wrong address is not."""
    return RetryPolicy()


def make_api(settings: UiSettings) -> InferenceClient:
    return InferenceClient(
        settings.api_url,
        settings.api_key,
        transport=http_transport(),
        timeout_s=settings.request_timeout_s,
        policy=retry_policy(),
        user_agent="cvinference-web-ui/0.1",
    )
